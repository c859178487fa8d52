"""Quantization by hand and by library: memory arithmetic, int8 schemes, perplexity, GGUF files.

- `memory_table`: bytes per parameter x parameter count, for inference and training;
- `absmax_quantize` / `zeropoint_quantize`: int8 in a few lines of torch, with
  `reconstruction_error` to see what each loses;
- `perplexity_hf` (any transformers causal LM, bitsandbytes included) and
  `perplexity_llama_cpp` (a GGUF run by llama.cpp) scored on the *same token ids*;
- `gguf_metadata` / `gguf_tensor_types` / `gguf_tensors`: what a GGUF file says about itself.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

# bitsandbytes' 8-bit matmul repeats this once per layer per forward pass on CPU.
warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")

# --- memory arithmetic ------------------------------------------------------------------
BYTES_PER_PARAM: Mapping[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "4-bit": 0.5}

# Full fine-tuning with AdamW keeps, per parameter: the weights, their gradients and
# two optimizer moments (fp32). Mixed precision adds an fp32 master copy of the weights.
TRAINING_BYTES_PER_PARAM: Mapping[str, float] = {
    "fp32 + AdamW": 4 + 4 + 8,
    "bf16 mixed + AdamW": 2 + 2 + 4 + 8,
}

MODEL_SIZES: Mapping[str, float] = {"135M": 135e6, "1B": 1e9, "8B": 8e9, "70B": 70e9}


def gigabytes(n_bytes: float) -> float:
    return n_bytes / 1e9


def memory_table(sizes: Mapping[str, float] | None = None):
    """GB of weights per dtype (inference) and of weights+grads+optimizer (training), per model size.

    Activations and the KV cache come on top and depend on batch and context length.
    """
    import pandas as pd

    sizes = sizes or MODEL_SIZES
    rows = []
    for name, n_params in sizes.items():
        if n_params <= 0:
            raise ValueError(f"parameter count for {name!r} must be positive, got {n_params}")
        row = {"model": name, "parameters": int(n_params)}
        for dtype, nbytes in BYTES_PER_PARAM.items():
            row[f"infer {dtype} GB"] = round(gigabytes(n_params * nbytes), 2)
        for recipe, nbytes in TRAINING_BYTES_PER_PARAM.items():
            row[f"train {recipe} GB"] = round(gigabytes(n_params * nbytes), 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def parameter_bytes(model) -> int:
    """Bytes held by a model's parameters and buffers, as stored (packed 4-bit counts as stored)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


# --- int8 by hand -----------------------------------------------------------------------


def absmax_quantize(weight: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8: scale so the largest |w| maps to 127. Per tensor, or per row/column with `dim`."""
    w = weight.detach().float()
    amax = w.abs().amax() if dim is None else w.abs().amax(dim=dim, keepdim=True)
    scale = 127.0 / amax.clamp(min=1e-12)
    q = torch.round(w * scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() / scale


def zeropoint_quantize(weight: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int8: map [min, max] onto [-128, 127] with a scale and an integer zero point."""
    w = weight.detach().float()
    if dim is None:
        lo, hi = w.amin(), w.amax()
    else:
        lo, hi = w.amin(dim=dim, keepdim=True), w.amax(dim=dim, keepdim=True)
    scale = 255.0 / (hi - lo).clamp(min=1e-12)
    zero = torch.round(-scale * lo) - 128
    q = torch.round(w * scale + zero).clamp(-128, 127).to(torch.int8)
    return q, scale, zero


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q.float() - zero) / scale


def reconstruction_error(original: torch.Tensor, restored: torch.Tensor) -> dict[str, float]:
    """Mean absolute, root-mean-square and max error, and the error relative to the weights' RMS."""
    if original.shape != restored.shape:
        raise ValueError(f"shapes differ: {tuple(original.shape)} vs {tuple(restored.shape)}")
    original, restored = original.detach().float(), restored.detach().float()
    diff = (original - restored).flatten()
    rms = float(original.float().pow(2).mean().sqrt())
    rmse = float(diff.pow(2).mean().sqrt())
    return {
        "mean abs error": float(diff.abs().mean()),
        "rmse": rmse,
        "max abs error": float(diff.abs().max()),
        "rmse / weight rms": rmse / rms if rms else float("nan"),
    }


def int8_comparison(weight: torch.Tensor):
    """Reconstruction error of absmax and zero-point, per tensor and per output row."""
    import pandas as pd

    rows = {}
    for label, dim in (("per tensor", None), ("per row", 1)):
        q, s = absmax_quantize(weight, dim)
        rows[f"absmax, {label}"] = reconstruction_error(weight, absmax_dequantize(q, s))
        q, s, z = zeropoint_quantize(weight, dim)
        rows[f"zero-point, {label}"] = reconstruction_error(weight, zeropoint_dequantize(q, s, z))
    return pd.DataFrame(rows).T


# --- perplexity -------------------------------------------------------------------------


def heldout_token_ids(tokenizer, text: str, n_tokens: int) -> list[int]:
    """The first `n_tokens` token ids of `text` (no special tokens), the same for every model."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise ValueError("the held-out text needs at least 2 tokens to score")
    return ids[:n_tokens]


def _windowed_perplexity(token_ids: Sequence[int], window: int, bos_id: int | None, logits_of) -> float:
    """exp(mean negative log-likelihood) of every token after the first, in non-overlapping windows.

    `logits_of(ids)` returns one row of next-token logits per input id; both back ends
    (transformers and llama.cpp) share this loop, so they score exactly the same tokens.
    """
    import numpy as np

    ids = list(token_ids)
    if len(ids) < 2:
        raise ValueError("need at least 2 tokens")
    prefix = [bos_id] if bos_id is not None else []
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start : start + window + 1]
        if len(chunk) < 2:
            break
        logits = np.asarray(logits_of(prefix + chunk), dtype=np.float64)[len(prefix) : len(prefix) + len(chunk) - 1]
        logits -= logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= float(logprobs[np.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
    return math.exp(total / count)


@torch.no_grad()
def perplexity_hf(model, token_ids: Sequence[int], window: int = 512, bos_id: int | None = None) -> float:
    """Perplexity of a transformers causal LM on `token_ids`."""
    device = next(model.parameters()).device

    def logits_of(ids: list[int]):
        return model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()

    return _windowed_perplexity(token_ids, window, bos_id, logits_of)


def llama_cpp_status() -> str:
    """'ok (version)' or why llama-cpp-python cannot be used here."""
    try:
        import llama_cpp
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}".splitlines()[0]
    return f"ok ({getattr(llama_cpp, '__version__', '?')})"


def perplexity_llama_cpp(gguf_file: str | os.PathLike, token_ids: Sequence[int], window: int = 512, bos_id: int | None = None, n_threads: int | None = None) -> float:
    """The same perplexity as `perplexity_hf`, computed by llama.cpp on the GGUF's own weights."""
    from llama_cpp import Llama

    if len(list(token_ids)) < 2:
        raise ValueError("need at least 2 tokens")
    llm = Llama(
        model_path=str(gguf_file),
        n_ctx=window + 8,
        logits_all=True,
        verbose=False,
        n_threads=n_threads or max(os.cpu_count() or 1, 1),
    )

    def logits_of(ids: list[int]):
        llm.reset()
        llm.eval(ids)
        return llm.scores[: len(ids)]

    try:
        return _windowed_perplexity(token_ids, window, bos_id, logits_of)
    finally:
        llm.close() if hasattr(llm, "close") else None


# --- GGUF files -------------------------------------------------------------------------

QUANT_NAMES: Mapping[str, str] = {
    "F32": "32-bit float, no quantization (norms and small tensors often stay here)",
    "F16": "16-bit float",
    "Q8_0": "8-bit, blocks of 32 weights sharing one fp16 scale (absmax per block): ~8.5 bits/weight",
    "Q4_0": "4-bit, blocks of 32 with one fp16 scale (symmetric): ~4.5 bits/weight",
    "Q4_1": "4-bit, blocks of 32 with an fp16 scale and an fp16 minimum (zero-point style): ~5 bits/weight",
    "Q5_0": "5-bit, blocks of 32 with one scale",
    "Q6_K": "6-bit k-quant: super-blocks of 256 with 8-bit sub-block scales: ~6.6 bits/weight",
    "Q4_K": "4-bit k-quant: super-blocks of 256 split into 8 sub-blocks with 6-bit scales and mins: ~4.5 bits/weight",
    "Q4_K_M": "a file mix: most tensors Q4_K, the most sensitive (parts of attention V and FFN down) Q6_K",
}


def _field_value(field):
    from gguf import GGUFValueType

    if not field.types:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if kind == GGUFValueType.ARRAY:
        return f"array[{len(field.data)}]"
    value = field.parts[field.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


@functools.lru_cache(maxsize=2)
def _reader(path: str):
    # Parsing the header (the vocabulary alone is 49k strings) takes seconds: do it once per file.
    from gguf import GGUFReader

    return GGUFReader(path)


def gguf_metadata(path: str | os.PathLike, skip_arrays: bool = True) -> dict[str, object]:
    """Every key-value pair in a GGUF header (large arrays such as the vocabulary summarised)."""
    from gguf import GGUFValueType

    reader = _reader(str(Path(path).resolve()))
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        if skip_arrays and field.types and field.types[0] == GGUFValueType.ARRAY:
            meta[name] = f"array of {len(field.data)}"
        else:
            meta[name] = _field_value(field)
    return meta


def gguf_tensor_types(path: str | os.PathLike):
    """Tensors per quantization type, their parameter count and bytes on disk, and bits per weight."""
    import pandas as pd

    reader = _reader(str(Path(path).resolve()))
    rows = [
        {"type": t.tensor_type.name, "params": int(t.n_elements), "bytes": int(t.n_bytes)}
        for t in reader.tensors
    ]
    frame = pd.DataFrame(rows).groupby("type").agg(tensors=("params", "size"), params=("params", "sum"), bytes=("bytes", "sum"))
    frame["bits per weight"] = (8 * frame["bytes"] / frame["params"]).round(2)
    frame["meaning"] = [QUANT_NAMES.get(t, "") for t in frame.index]
    return frame.sort_values("params", ascending=False)


def gguf_tensors(path: str | os.PathLike, limit: int | None = 12):
    """The first tensors of the file: name, type, shape."""
    import pandas as pd

    reader = _reader(str(Path(path).resolve()))
    rows = [{"name": t.name, "type": t.tensor_type.name, "shape": tuple(int(x) for x in t.shape)} for t in reader.tensors]
    return pd.DataFrame(rows[:limit] if limit else rows)


def file_size_mb(path: str | os.PathLike) -> float:
    return Path(path).stat().st_size / 1e6


# --- bitsandbytes variants side by side ---------------------------------------------------
# (load kind for models.load_causal_lm, label in notebook 03's tables)
QUANTIZED_VARIANTS: tuple[tuple[str, str], ...] = (
    ("8bit", "8-bit"),
    ("4bit", "4-bit NF4 + double quant"),
    ("4bit-nodq", "4-bit NF4"),
)


def dtype_label(dtype) -> str:
    """'fp32', 'fp16' or 'bf16' for a torch dtype (what the full-precision row of a table is)."""
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype).replace("torch.", ""))


def load_variants(full_model, role: str = "chat_model", profile=None) -> tuple[dict, dict[str, float]]:
    """The full-precision model (labelled by its dtype) plus every bitsandbytes variant that loads
    here: ({label: model}, {label: seconds to load}). A variant that cannot load is reported and
    left out, so the comparison goes on with what this machine can run; in the ci profile it
    is an error instead, so a broken bitsandbytes fails the notebook under test."""
    import time

    from . import config, models

    strict = (profile or config.get_profile()).name == "ci"

    variants, seconds = {dtype_label(full_model.dtype): full_model}, {}
    status = models.bitsandbytes_status()
    if not status.startswith("ok"):
        if strict:
            raise RuntimeError(f"bitsandbytes: {status} (the ci profile needs every variant)")
        print(f"bitsandbytes: {status}. Only the full-precision model is compared; install a bitsandbytes build for this hardware to see the rest.")
        return variants, seconds
    for kind, label in QUANTIZED_VARIANTS:
        start = time.perf_counter()
        try:
            variants[label] = models.load_causal_lm(role, profile, quantization=kind)
            seconds[label] = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            print(f"could not load {label}: the GPU ran out of memory holding {len(variants)} copies of the model at once; "
                  "a smaller chat_model in the profile, or a bigger GPU, compares them all")  # fmt: skip
        except Exception as exc:  # e.g. a GPU build of bitsandbytes on a CPU-only machine
            if strict:
                raise
            print(f"could not load {label}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return variants, seconds


def footprint_table(variants: Mapping[str, object], load_seconds: Mapping[str, float]):
    """Memory footprint (MB), load time and size relative to the first (full-precision) variant."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "footprint MB": {k: m.get_memory_footprint() / 1e6 for k, m in variants.items()},
            "load s": {k: load_seconds.get(k) for k in variants},
        }
    ).round(1)
    table["vs full precision"] = (table["footprint MB"] / table["footprint MB"].iloc[0]).round(2)
    return table


def generate_each(variants: Mapping[str, object], tokenizer, question: str, max_new_tokens: int = 20):
    """Each variant's greedy reply to the same chat question, as a one-column DataFrame."""
    import pandas as pd

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    n_prompt = inputs["input_ids"].shape[1]
    replies = {}
    for label, model in variants.items():
        with torch.no_grad():
            out = model.generate(**inputs.to(model.device), max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        replies[label] = tokenizer.decode(out[0, n_prompt:], skip_special_tokens=True)
    return pd.Series(replies, name="reply").to_frame()


def perplexity_each(variants: Mapping[str, object], token_ids: Sequence[int]) -> dict[str, float]:
    """{label: perplexity on the same token ids} for every variant, printing each with its time."""
    import time

    perplexity = {}
    for label, model in variants.items():
        started = time.perf_counter()
        perplexity[label] = perplexity_hf(model, token_ids)
        print(f"{label:26s} perplexity {perplexity[label]:8.2f}  ({time.perf_counter() - started:.1f} s)")
    return perplexity


def perplexity_table(perplexity: Mapping[str, float], footprint, full_label: str, gguf_file: str | os.PathLike | None = None):
    """Perplexity, its ratio to the full-precision model and the footprint (MB), one row per variant.

    `footprint` is footprint_table's result; a GGUF row (its label starts with "GGUF") takes the
    file's size instead, since llama.cpp reads the file as it is.
    """
    import pandas as pd

    if full_label not in perplexity:
        raise KeyError(f"no perplexity for the full-precision model {full_label!r}; have {', '.join(perplexity)}")
    table = pd.DataFrame({"perplexity": dict(perplexity)}).round(2)
    table["vs full precision"] = (table["perplexity"] / table.loc[full_label, "perplexity"]).round(3)
    table = table.join(footprint[["footprint MB"]])
    if gguf_file is not None:
        table.loc[table.index.str.startswith("GGUF"), "footprint MB"] = round(file_size_mb(gguf_file), 1)
    return table


def ordering_check(perplexity: Mapping[str, float], expected_order: Sequence[str], n_tokens: int) -> list[str]:
    """One line per neighbouring pair of `expected_order` (best first) found in `perplexity`:
    'ok' when the order holds, 'inversion' with its size when it does not."""
    present = [k for k in expected_order if k in perplexity]
    lines = []
    for better, worse in zip(present, present[1:]):
        if perplexity[better] <= perplexity[worse]:
            lines.append(f"ok: {better} ({perplexity[better]:.2f}) <= {worse} ({perplexity[worse]:.2f})")
        else:
            gap = perplexity[better] / perplexity[worse] - 1
            lines.append(f"inversion: {better} ({perplexity[better]:.2f}) is {gap:.1%} above {worse} ({perplexity[worse]:.2f}) on {n_tokens} tokens")
    return lines


__all__ = [
    "BYTES_PER_PARAM",
    "TRAINING_BYTES_PER_PARAM",
    "MODEL_SIZES",
    "memory_table",
    "parameter_bytes",
    "absmax_quantize",
    "absmax_dequantize",
    "zeropoint_quantize",
    "zeropoint_dequantize",
    "reconstruction_error",
    "int8_comparison",
    "heldout_token_ids",
    "perplexity_hf",
    "llama_cpp_status",
    "perplexity_llama_cpp",
    "QUANT_NAMES",
    "gguf_metadata",
    "gguf_tensor_types",
    "gguf_tensors",
    "file_size_mb",
    "gigabytes",
    "QUANTIZED_VARIANTS",
    "dtype_label",
    "load_variants",
    "footprint_table",
    "generate_each",
    "perplexity_each",
    "perplexity_table",
    "ordering_check",
]
