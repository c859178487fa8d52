"""QLoRA: LoRA adapters on a 4-bit NF4 base model, their loading, saving and publishing.

Notebook 10 writes the same BitsAndBytesConfig and LoraConfig out in its cells
(tests/test_lessons_finetune.py checks that they agree); notebooks 11-16 load the saved
adapters from here. Adapters are written to a temporary folder and moved into place, so
an interrupted save never leaves half an adapter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core import config
from ..core.storage import atomic_write_dir, restore_dir


# --- QLoRA ---------------------------------------------------------------------------------
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(profile: config.Profile | None = None, **overrides):
    """LoRA: beside each target matrix W, train a low-rank update B @ A (rank r), scaled by alpha / r."""
    from peft import LoraConfig

    profile = profile or config.get_profile()
    settings = dict(
        r=profile.size("lora_r"),  # rank: the adapters' capacity (and size)
        lora_alpha=profile.size("lora_alpha"),  # scale of the update; alpha = 2r is a common choice
        lora_dropout=0.05,  # dropout on the adapter input, a little regularisation
        target_modules=list(LORA_TARGETS),  # every attention and MLP projection
        bias="none",
        task_type="CAUSAL_LM",
    )
    settings.update(overrides)
    return LoraConfig(**settings)


def load_qlora_model(profile: config.Profile | None = None, adapter: str | os.PathLike | None = None, trainable: bool = True):
    """The base model in 4-bit NF4 with double quantization, plus new (or saved) LoRA adapters."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from ..foundations.models import load_causal_lm, pick_device

    profile = profile or config.get_profile()
    base = load_causal_lm("base_model", profile, quantization="4bit")
    if adapter is not None:
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    # Casts norms to fp32 and makes the inputs require grads, so gradients reach the adapters.
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=pick_device() == "cuda")
    return get_peft_model(base, lora_config(profile))


def load_base(profile: config.Profile | None = None, quantized: bool | None = None):
    """The base model as `load_finetuned` loads it, minus the adapter.

    Same precision on both sides (4-bit on the GPU profiles, full precision offline), so
    notebook 11's base-versus-fine-tuned comparison measures the adapter, not the quantization.
    """
    from ..foundations.models import load_causal_lm

    profile = profile or config.get_profile()
    quantized = profile.load_in_4bit if quantized is None else quantized
    return load_causal_lm("base_model", profile, quantization="4bit" if quantized else None)


def load_finetuned(profile: config.Profile | None = None, adapter: str | os.PathLike | None = None, quantized: bool | None = None):
    """The base model with the saved adapter, for inference.

    quantized=None follows the profile: 4-bit on the GPU profiles (a 7B base needs it);
    offline, the adapter is merged into the full-precision base instead, because
    bitsandbytes' 4-bit matmuls on a CPU are ~3x slower than plain fp32 ones. The
    adapter learned on the NF4 weights; the merged fp32 model differs from the trained
    one by the (small) quantization error, which the notebook's scores include.
    """
    from peft import PeftModel

    profile = profile or config.get_profile()
    adapter = restore_dir(adapter or adapter_dir(profile))
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no adapter at {adapter}; run notebook 10 (QLoRA) first to train and save it")
    check_adapter_base(adapter, profile)
    quantized = profile.load_in_4bit if quantized is None else quantized
    model = PeftModel.from_pretrained(load_base(profile, quantized), str(adapter))
    if not quantized:
        model = model.merge_and_unload()
    model.eval()
    return model


def check_adapter_base(adapter, profile: config.Profile | None = None) -> None:
    """Refuse an adapter trained on another Hub model than this profile's base model.

    LoRA matrices only fit the model they were trained on. The base can change between
    notebooks 10 and 11 when an HF token (which unlocks a larger gated model) is set in one
    session and not the other. Local paths (the offline models) are not compared: the same
    model sits in a different cache folder on another machine.
    """
    from ..foundations.models import model_location

    saved = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    current = model_location("base_model", profile or config.get_profile())
    if saved and not Path(saved).is_absolute() and saved != current:
        raise ValueError(
            f"the adapter at {adapter} was trained on {saved}, but this profile's base model is {current}; "
            "set (or unset) HF_TOKEN as when notebook 10 ran, or train the adapter again"
        )


def adapter_dir(profile: config.Profile | None = None, name: str = "qlora-pricer") -> Path:
    profile = profile or config.get_profile()
    return profile.work_dir / "adapters" / name


def save_adapter(model, target: str | os.PathLike) -> Path:
    """Save only the LoRA weights, atomically: a temp folder, then os.replace over the old one."""
    return atomic_write_dir(target, lambda tmp: model.save_pretrained(str(tmp)))


HUB_REPO_ENV = "COURSE_HUB_REPO"


def push_adapter(model, repo_id: str | None = None, private: bool = True) -> str | None:
    """Push the adapter to a private Hub repo you name; returns its URL, or None when skipped.

    Opt-in: the repo comes from `repo_id` or $COURSE_HUB_REPO ("your-name/qlora-pricer"), so
    nothing is published to a name you did not choose. Skipped (None) without a repo, without
    HF_TOKEN, or in an offline profile.
    """
    from ..core import secrets

    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV, "")).strip()
    token = secrets.get_secret("HF_TOKEN")
    if not repo_id or not token or config.get_profile().offline:
        return None
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"Hub repo {repo_id!r} must look like 'your-name/qlora-pricer'")
    model.push_to_hub(repo_id, token=token, private=private)
    return f"https://huggingface.co/{repo_id}"


def interruption_step(profile: config.Profile | None = None) -> int:
    """Where notebook 10 stops its first run: about halfway, on a checkpoint boundary."""
    profile = profile or config.get_profile()
    save, total = profile.size("qlora_save_steps"), profile.size("qlora_max_steps")
    return max(save, (total // 2) // save * save)
