"""The lesson code notebooks 01-03 write in their cells, run cell by cell, and where the package keeps the
same logic for other code, checked to agree with it (tests/notebook_cells.py runs one cell on its own)."""

from __future__ import annotations

import pytest
import torch

from notebook_cells import cell_namespace

from course_utils.core import model_registry
from course_utils.foundations import models, pipelines, tokens

TOKENIZERS = "01_tokenizers.ipynb"
PIPELINES = "02_pipelines.ipynb"
QUANTIZATION = "03_models_and_quantization.ipynb"


# --- 01: tokenizers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_families():
    # The package-shipped encodings load in well under a second each.
    names = ["gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3", "qwen-3", "mistral (tekken)"]
    return {n: tokens.load_tok(n, model_registry.OFFLINE_TOKENIZERS[n]) for n in names}


@pytest.fixture(scope="module")
def number_cells(fast_families):
    ns = cell_namespace(TOKENIZERS, "def number_pieces(", toks=fast_families)
    return ns | cell_namespace(TOKENIZERS, "def largest_single_token_number(", toks=fast_families, number_pieces=ns["number_pieces"])


def test_three_digit_families_keep_prices_up_to_999_whole(fast_families, number_cells):
    for name in ["gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3"]:
        tok = fast_families[name]
        assert number_cells["largest_single_token_number"](tok, limit=1500) == 999, name
        assert number_cells["number_pieces"](tok, 1234) == ["123", "4"], name
    assert set(number_cells["one_token"]) == {"gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3"}


def test_digit_families_split_every_digit(fast_families, number_cells):
    for name in ["qwen-3", "mistral (tekken)"]:
        tok = fast_families[name]
        assert number_cells["number_pieces"](tok, 849) == ["8", "4", "9"], name
        assert number_cells["largest_single_token_number"](tok) == 9, name
        assert not number_cells["prices_table"].loc[name, "0..999 one token each"]


def test_comparison_counts_tokens_per_word(fast_families):
    ns = cell_namespace(TOKENIZERS, "def word_count(", toks=fast_families)
    assert ns["word_count"]("one two, three!") == 5  # words and punctuation marks
    table = ns["pd"].DataFrame(ns["rows"]).set_index("tokenizer")
    assert list(table.index) == list(fast_families)
    assert (table["tokens"] == [len(tok.encode(ns["comparison_text"])) for tok in fast_families.values()]).all()


def test_cost_arithmetic(fast_families):
    ns = cell_namespace(TOKENIZERS, "PRICES_PER_MILLION = {", toks=fast_families, comparison_text="a shirt")
    # 1M input tokens at $0.15 plus 1M output tokens at $0.60.
    assert ns["estimate_cost"](1_000_000, 1_000_000, "gpt-4o-mini") == pytest.approx(0.75)
    assert ns["n_prompt"] == fast_families["gpt-4o (o200k)"].count(ns["prompt"])


def test_bpe_training_cell_learns_frequent_words(tmp_path):
    ns = cell_namespace(TOKENIZERS, "def train_bpe(")
    texts = ["brand new shoes size 10", "brand new dress size small", "new with tags"] * 200
    bpe = ns["train_bpe"](texts, vocab_size=300)
    assert bpe.get_vocab_size() <= 300
    bpe.save(str(tmp_path / "bpe.json"))
    ours = ns["as_tok"](ns["Tokenizer"].from_file(str(tmp_path / "bpe.json")), "ours")
    text = "brand new shoes, size 11 ünïcode 🙂"
    assert ours.decode(ours.encode(text)) == text  # byte-level: nothing is lost
    # After training, a frequent phrase costs far fewer tokens than its bytes.
    assert ours.count(" brand new shoes") < len(" brand new shoes") / 2


# --- 02: pipelines ----------------------------------------------------------------------


def test_mean_pool_cell_agrees_with_the_package():
    ns = cell_namespace(PIPELINES, "def mean_pool(")
    torch.manual_seed(0)
    vectors = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    assert torch.allclose(ns["mean_pool"](vectors, mask), pipelines.mean_pool(vectors, mask), atol=1e-6)
    # The cell's pooled pipeline output is what SentenceTransformer gives for the same sentence.
    embedder = models.load_embedding_model()
    expected = torch.as_tensor(embedder.encode(ns["sentences"][:1], normalize_embeddings=True))
    assert torch.allclose(ns["vectors"], expected, atol=1e-4)


def _tiny_classifier(labels):
    cfg = pipelines.EmbeddingClassifierConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64
    )
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    return pipelines.EmbeddingClassifier(cfg).eval()


def test_fit_head_cell_separates_separable_vectors():
    ns = cell_namespace(PIPELINES, "def fit_head(")
    model = _tiny_classifier(["cat", "dog"])
    vectors = torch.nn.functional.normalize(torch.randn(40, 16), dim=-1)
    labels = ["cat" if v[0] > 0 else "dog" for v in vectors]
    losses = ns["fit_head"](model, vectors, labels, epochs=200)
    assert losses[-1] < losses[0] * 0.5
    predicted = [model.config.id2label[i] for i in model.classifier(vectors).argmax(1).tolist()]
    assert sum(p == a for p, a in zip(predicted, labels)) / len(labels) >= 0.9
    # The encoder stayed frozen: only the head's weights were trained.
    assert all(p.grad is None for p in model.bert.parameters())


# --- 03: models and quantization --------------------------------------------------------


@pytest.fixture(scope="module")
def int8_cell():
    return cell_namespace(QUANTIZATION, "def absmax_quantize(")


def test_memory_table_numbers():
    table = cell_namespace(QUANTIZATION, "def memory_table(")["memory_table"]({"8B": 8e9})
    assert table.loc["8B", "infer fp32 GB"] == 32.0
    assert table.loc["8B", "infer fp16 GB"] == 16.0
    assert table.loc["8B", "infer int8 GB"] == 8.0
    assert table.loc["8B", "infer 4-bit GB"] == 4.0
    assert table.loc["8B", "train fp32 + AdamW GB"] == 128.0


def test_absmax_round_trip_error_is_within_half_a_step(int8_cell):
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    q, scale = int8_cell["absmax_quantize"](w)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    err = (int8_cell["absmax_dequantize"](q, scale) - w).abs().max()
    assert float(err) <= 0.5 / float(scale) + 1e-6


def test_zeropoint_uses_the_full_range_and_beats_absmax_on_skewed_weights(int8_cell):
    torch.manual_seed(0)
    w = torch.rand(64, 128) * 2 + 1  # all positive: absmax wastes half of its range
    q, scale, zero = int8_cell["zeropoint_quantize"](w)
    assert int(q.min()) == -128 and int(q.max()) == 127
    zp = (int8_cell["zeropoint_dequantize"](q, scale, zero) - w).pow(2).mean()
    qa, sa = int8_cell["absmax_quantize"](w)
    am = (int8_cell["absmax_dequantize"](qa, sa) - w).pow(2).mean()
    assert zp < am


def test_per_row_scales_beat_one_scale_when_rows_differ(int8_cell):
    model = torch.nn.Module()
    model.q_proj = torch.nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        model.q_proj.weight.mul_(torch.logspace(-2, 1, 32).unsqueeze(1))
    ns = cell_namespace(QUANTIZATION, "def reconstruction_error(", full=model, **{k: v for k, v in int8_cell.items() if k.endswith("quantize")})
    table = ns["int8_errors"]
    assert table.loc["absmax, per row", "rmse"] < table.loc["absmax, per tensor", "rmse"]
    assert set(table.columns) == {"mean abs error", "rmse", "max abs error", "rmse / weight rms"}
    assert ns["reconstruction_error"](torch.ones(3), torch.ones(3))["rmse"] == 0.0


def test_bitsandbytes_configs_of_the_cell_are_the_ones_the_package_loads_with():
    configs = cell_namespace(QUANTIZATION, "BitsAndBytesConfig(load_in_8bit=True")["bnb_configs"]
    for label, kind in [("8-bit", "8bit"), ("4-bit NF4 + double quant", "4bit"), ("4-bit NF4", "4bit-nodq")]:
        assert configs[label].to_dict() == models.quantization_config(kind).to_dict(), label
