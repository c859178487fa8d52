"""Perplexity measured alike by transformers and by llama.cpp (notebook 03).

Notebook 03 writes its lesson out in its cells: the memory arithmetic, absmax and
zero-point int8, the `BitsAndBytesConfig`s, the GGUF header. What stays here is the
measuring instrument: `perplexity_hf` (any transformers causal LM, bitsandbytes
included) and `perplexity_llama_cpp` (a GGUF run by llama.cpp) share one windowed loop,
so both back ends score exactly the same tokens.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Sequence

import torch

# bitsandbytes' 8-bit matmul repeats this once per layer per forward pass on CPU.
warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")


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


__all__ = [
    "perplexity_hf",
    "llama_cpp_status",
    "perplexity_llama_cpp",
]
