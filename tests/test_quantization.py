"""Perplexity by transformers and by llama.cpp on the same ids (course_utils.foundations.quantization).

The lesson code notebook 03 writes in its cells (memory arithmetic, int8 by hand, the bitsandbytes configs)
is tested in test_lessons_foundations.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_utils.foundations import quantization as Q
from needs import need_module


class _UniformLM(torch.nn.Module):
    """A 'model' that gives every token of a vocabulary of V the same probability: perplexity V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        class Out:
            pass

        out = Out()
        out.logits = torch.zeros(*input_ids.shape, self.vocab)
        return out


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    ids = list(range(50)) * 3
    assert Q.perplexity_hf(_UniformLM(64), ids, window=32) == pytest.approx(64, rel=1e-5)
    with pytest.raises(ValueError):
        Q.perplexity_hf(_UniformLM(64), [1])


@pytest.fixture(scope="module")
def gguf_file():
    from course_utils.foundations import models

    return models.gguf_path()


@pytest.mark.slow
def test_perplexity_hf_on_smollm2_is_finite_and_text_beats_noise():
    from course_utils.foundations import listings, models

    model = models.load_causal_lm()
    tokenizer = models.load_tokenizer()
    ids = tokenizer("\n".join(listings.listing_texts(40, seed=3)), add_special_tokens=False)["input_ids"][:128]
    ppl = Q.perplexity_hf(model, ids)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))
    shuffled = [ids[i] for i in order]
    assert 1 < ppl < 1000
    assert Q.perplexity_hf(model, shuffled) > ppl


@pytest.mark.slow
def test_llama_cpp_perplexity_matches_transformers_on_the_same_ids(gguf_file):
    need_module("llama_cpp", "llama-cpp-python is not installed")
    from course_utils.foundations import listings, models

    tokenizer = models.load_tokenizer()
    ids = tokenizer("\n".join(listings.listing_texts(40, seed=3)), add_special_tokens=False)["input_ids"][:96]
    hf = Q.perplexity_hf(models.load_causal_lm(), ids)
    cpp = Q.perplexity_llama_cpp(gguf_file, ids)
    # Same Q4_1 weights; llama.cpp also quantizes activations for the matmuls, so close, not equal.
    assert math.isfinite(cpp)
    assert cpp == pytest.approx(hf, rel=0.15)


