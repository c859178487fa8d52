"""Memory arithmetic, int8 by hand, perplexity and GGUF metadata (course_utils.quantization)."""

from __future__ import annotations

import math

import pytest
import torch

from course_utils import quantization as Q


def test_memory_table_numbers():
    table = Q.memory_table({"8B": 8e9})
    assert table.loc["8B", "infer fp32 GB"] == 32.0
    assert table.loc["8B", "infer fp16 GB"] == 16.0
    assert table.loc["8B", "infer int8 GB"] == 8.0
    assert table.loc["8B", "infer 4-bit GB"] == 4.0
    assert table.loc["8B", "train fp32 + AdamW GB"] == 128.0
    full = Q.memory_table()
    assert list(full.index) == ["135M", "1B", "8B", "70B"]
    with pytest.raises(ValueError, match="positive"):
        Q.memory_table({"bad": 0})


def test_absmax_round_trip_error_is_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    q, scale = Q.absmax_quantize(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    err = (Q.absmax_dequantize(q, scale) - w).abs().max()
    assert float(err) <= 0.5 / float(scale) + 1e-6


def test_zeropoint_uses_the_full_range_and_beats_absmax_on_skewed_weights():
    torch.manual_seed(0)
    w = torch.rand(64, 128) * 2 + 1  # all positive: absmax wastes half of its range
    q, scale, zero = Q.zeropoint_quantize(w)
    assert int(q.min()) == -128 and int(q.max()) == 127
    zp = Q.reconstruction_error(w, Q.zeropoint_dequantize(q, scale, zero))
    qa, sa = Q.absmax_quantize(w)
    am = Q.reconstruction_error(w, Q.absmax_dequantize(qa, sa))
    assert zp["rmse"] < am["rmse"]


def test_per_row_scales_beat_one_scale_when_rows_differ():
    torch.manual_seed(0)
    w = torch.randn(32, 64) * torch.logspace(-2, 1, 32).unsqueeze(1)
    table = Q.int8_comparison(w)
    assert table.loc["absmax, per row", "rmse"] < table.loc["absmax, per tensor", "rmse"]
    assert set(table.columns) == {"mean abs error", "rmse", "max abs error", "rmse / weight rms"}


def test_reconstruction_error_checks_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        Q.reconstruction_error(torch.zeros(2, 2), torch.zeros(4))
    assert Q.reconstruction_error(torch.ones(3), torch.ones(3))["rmse"] == 0.0


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
    from course_utils import models

    return models.gguf_path()


def test_gguf_metadata_and_tensor_types(gguf_file):
    meta = Q.gguf_metadata(gguf_file)
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 30
    assert meta["tokenizer.ggml.tokens"].startswith("array of")
    types = Q.gguf_tensor_types(gguf_file)
    assert "Q4_1" in types.index
    assert 4.5 < types.loc["Q4_1", "bits per weight"] < 5.5  # 4 bits + an fp16 scale and min per 32
    assert 120e6 < types["params"].sum() < 150e6
    assert Q.file_size_mb(gguf_file) == pytest.approx(types["bytes"].sum() / 1e6, rel=0.05)


def test_gguf_tensors_lists_names_types_and_shapes(gguf_file):
    first = Q.gguf_tensors(gguf_file, limit=5)
    assert list(first.columns) == ["name", "type", "shape"] and len(first) == 5
    every = Q.gguf_tensors(gguf_file, limit=None)
    assert list(every["name"][:5]) == list(first["name"])
    # SmolLM2-135M: 30 blocks of 9 tensors, plus the token embeddings and the final norm.
    assert len(every) == 30 * 9 + 2 and every["name"].is_unique
    assert set(every["type"]) <= set(Q.gguf_tensor_types(gguf_file).index)
    embd = every.set_index("name").loc["token_embd.weight"]
    assert sorted(embd["shape"]) == [576, 49152]
    params = sum(math.prod(shape) for shape in every["shape"])
    assert params == Q.gguf_tensor_types(gguf_file)["params"].sum()


@pytest.mark.slow
def test_perplexity_hf_on_smollm2_is_finite_and_text_beats_noise():
    from course_utils import models, tokens

    model = models.load_causal_lm()
    tokenizer = models.load_tokenizer()
    ids = Q.heldout_token_ids(tokenizer, "\n".join(tokens.listing_texts(40, seed=3)), 128)
    ppl = Q.perplexity_hf(model, ids)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))
    shuffled = [ids[i] for i in order]
    assert 1 < ppl < 1000
    assert Q.perplexity_hf(model, shuffled) > ppl
    assert Q.parameter_bytes(model) == pytest.approx(model.get_memory_footprint(), rel=0.01)
    # The per-variant helpers of notebook 03 give each label the same as a direct call.
    assert Q.perplexity_each({"fp32": model, "again": model}, ids) == {"fp32": ppl, "again": ppl}
    replies = Q.generate_each({"fp32": model, "again": model}, tokenizer, "What is the capital of France?", max_new_tokens=8)
    assert list(replies.index) == ["fp32", "again"] and replies.loc["fp32", "reply"] == replies.loc["again", "reply"] != ""


@pytest.mark.slow
def test_llama_cpp_perplexity_matches_transformers_on_the_same_ids(gguf_file):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from course_utils import models, tokens

    tokenizer = models.load_tokenizer()
    ids = Q.heldout_token_ids(tokenizer, "\n".join(tokens.listing_texts(40, seed=3)), 96)
    hf = Q.perplexity_hf(models.load_causal_lm(), ids)
    cpp = Q.perplexity_llama_cpp(gguf_file, ids)
    # Same Q4_1 weights; llama.cpp also quantizes activations for the matmuls, so close, not equal.
    assert math.isfinite(cpp)
    assert cpp == pytest.approx(hf, rel=0.15)


def test_variant_tables_label_full_precision_by_dtype_and_check_the_order(monkeypatch):
    from course_utils import models

    assert [Q.dtype_label(d) for d in (torch.float32, torch.float16, torch.bfloat16, torch.int8)] == ["fp32", "fp16", "bf16", "int8"]

    class Fake:
        def __init__(self, mb, dtype=torch.float32):
            self.mb, self.dtype = mb, dtype

        def get_memory_footprint(self):
            return self.mb * 1e6

    monkeypatch.setattr(models, "bitsandbytes_status", lambda: "unavailable: no build for this machine")
    from course_utils import config

    variants, seconds = Q.load_variants(Fake(500, torch.bfloat16), profile=config.get_profile("offline"))
    assert list(variants) == ["bf16"] and seconds == {}
    with pytest.raises(RuntimeError, match="bitsandbytes: unavailable"):  # under test, a missing variant fails
        Q.load_variants(Fake(500), profile=config.get_profile("ci"))
    table = Q.footprint_table({"bf16": Fake(500), "8-bit": Fake(300)}, {"8-bit": 1.5})
    assert table.loc["8-bit", "vs full precision"] == 0.6 and table.loc["8-bit", "load s"] == 1.5
    lines = Q.ordering_check({"fp32": 10.0, "8-bit": 9.9, "4-bit NF4 + double quant": 11.0}, ["fp32", "8-bit", "4-bit NF4 + double quant", "absent"], 256)
    assert lines[0].startswith("inversion: fp32") and "1.0% above 8-bit" in lines[0] and "256 tokens" in lines[0]
    assert lines[1].startswith("ok: 8-bit") and len(lines) == 2
    footprint = Q.footprint_table({"fp32": Fake(500), "8-bit": Fake(300)}, {})
    perplexity = {"fp32": 10.0, "8-bit": 10.5, "GGUF Q4_1 (llama.cpp)": 10.1}
    table = Q.perplexity_table(perplexity, footprint, "fp32")
    assert table.loc["8-bit", "vs full precision"] == 1.05 and table.loc["8-bit", "footprint MB"] == 300
    assert math.isnan(table.loc["GGUF Q4_1 (llama.cpp)", "footprint MB"])  # no file given: unknown
    with pytest.raises(KeyError, match="full-precision model 'bf16'"):
        Q.perplexity_table(perplexity, footprint, "bf16")


def test_perplexity_table_takes_the_gguf_rows_size_from_the_file(gguf_file):
    footprint = Q.footprint_table({"fp32": type("M", (), {"get_memory_footprint": lambda self: 540e6})()}, {})
    table = Q.perplexity_table({"fp32": 9.0, "GGUF Q4_1 (llama.cpp)": 9.1}, footprint, "fp32", gguf_file)
    assert table.loc["GGUF Q4_1 (llama.cpp)", "footprint MB"] == round(Q.file_size_mb(gguf_file), 1)
