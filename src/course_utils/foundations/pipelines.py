"""The pieces of notebook 02 that are models and plumbing rather than lesson code.

Offline there is a chat model (SmolLM2-135M-Instruct) and a sentence-embedding model
(all-MiniLM-L6-v2), but no pretrained task heads. The notebook writes its lesson out in
its cells (the pipelines, mean pooling, the training loop of the head, zero-shot
classification, the decoding strategies); this module keeps:

- `category_examples`: labelled Mercari listings, balanced across top-level categories;
- `EmbeddingClassifier`: the MiniLM encoder, mean pooling (`mean_pool`) and a linear head,
  a real transformers model class registered with the Auto classes when this module is
  imported, so `pipeline("text-classification", model=folder)` loads a saved one;
  `new_embedding_classifier` builds it and `save_classifier` writes it atomically;
- `choice_logprobs`: the chat model's mean log-probability of each candidate answer, with
  the prompt's key-value cache shared by all candidates (one batched pass for all).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from . import models
from ..core import config
from ..core.storage import atomic_write_dir


# --- labelled listings ------------------------------------------------------------------


def category_examples(n: int, seed: int = 42, per_class_cap: bool = True):
    """Mercari listings with their top-level category as the label (columns: text, label).

    With `per_class_cap`, at most n / n_classes listings per category, so the rare
    categories are not drowned out by "Women" (45% of all listings).
    """
    import pandas as pd

    from .listings import read_mercari, scrub, top_category

    frame = read_mercari(["name", "item_description", "category_name"]).dropna(subset=["category_name"])
    frame = frame.assign(label=frame["category_name"].map(top_category))
    if per_class_cap:
        cap = max(n // frame["label"].nunique(), 1)
        frame = frame.sample(frac=1.0, random_state=seed).groupby("label").head(cap)
    else:
        frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    text = [f"{scrub(name)}. {scrub(description)}".strip() for name, description in zip(frame["name"], frame["item_description"])]
    frame = frame.assign(text=text)
    return pd.DataFrame(frame[["text", "label"]].sample(frac=1.0, random_state=seed).reset_index(drop=True))


# --- a classifier head on the embedding model, loadable by pipeline() --------------------


def mean_pool(token_vectors, attention_mask=None, normalize: bool = True) -> torch.Tensor:
    """Average token vectors into one sentence vector (what SentenceTransformer does for MiniLM)."""
    vectors = torch.as_tensor(token_vectors, dtype=torch.float32)
    if vectors.dim() == 2:
        vectors = vectors.unsqueeze(0)
    if attention_mask is None:
        attention_mask = torch.ones(vectors.shape[:2])
    mask = torch.as_tensor(attention_mask, dtype=vectors.dtype).unsqueeze(-1)
    pooled = (vectors * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1) if normalize else pooled


class EmbeddingClassifierConfig(BertConfig):
    model_type = "course_embedding_classifier"


class EmbeddingClassifier(BertPreTrainedModel):
    """BERT encoder -> mean pooling -> L2 normalise -> linear: a sentence-embedding classifier."""

    config_class = EmbeddingClassifierConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def embed(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(hidden, attention_mask if attention_mask is not None else torch.ones_like(input_ids))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        logits = self.classifier(self.embed(input_ids, attention_mask, token_type_ids))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(EmbeddingClassifierConfig.model_type, EmbeddingClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(EmbeddingClassifierConfig, EmbeddingClassifier, exist_ok=True)


def new_embedding_classifier(labels: Sequence[str], profile: config.Profile | None = None):
    """An EmbeddingClassifier whose encoder is the profile's embedding model, head untrained."""
    from transformers import AutoTokenizer

    location = models.embedding_model_path((profile or config.get_profile()).embedding_model)
    encoder = BertModel.from_pretrained(location, add_pooling_layer=False)
    labels = list(labels)
    cfg = EmbeddingClassifierConfig(
        **{k: v for k, v in encoder.config.to_dict().items() if k not in ("model_type", "architectures", "transformers_version")},
    )
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {label: i for i, label in enumerate(labels)}
    model = EmbeddingClassifier(cfg)
    model.bert.load_state_dict(encoder.state_dict())
    model.eval()
    return model, AutoTokenizer.from_pretrained(location)


def save_classifier(model, tokenizer, folder: str | os.PathLike) -> Path:
    """save_pretrained into a temporary sibling, then swap it in (no half-written model on a crash)."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_write_dir(folder, write)


# --- zero-shot: scoring each label as the chat model's answer ----------------------------


def _cache_argument(model) -> str:
    """transformers 5.24 renamed forward's `past_key_values` to `cache` (the old name goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def choice_logprobs(model, tokenizer, messages: Sequence[Mapping[str, str]], choices: Sequence[str]) -> list[float]:
    """Mean log-probability of each choice as the assistant's reply to `messages`.

    The prompt runs through the model once; its key-value cache is then repeated once per
    choice and every choice continues from it in one batched call (right-padded, so the
    padding comes after each choice and cannot change its scores). Ten labels cost about
    one extra forward pass. The mean (not the sum) keeps long labels such as
    "Vintage & Collectibles" from being penalised for length.
    """
    prompt = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    device = next(model.parameters()).device
    prompt_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=device)
    choice_ids = [tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
    for choice, ids in zip(choices, choice_ids):
        if not ids:
            raise ValueError(f"choice {choice!r} has no tokens")
    out = model(input_ids=prompt_ids, use_cache=True, logits_to_keep=1)  # only the last position is read
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    token_lps = [[float(first[ids[0]])] for ids in choice_ids]
    width = max(len(ids) for ids in choice_ids) - 1  # tokens each choice feeds back in
    if width > 0:
        n, start = len(choice_ids), prompt_ids.shape[1]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        rows = [ids[:-1] + [pad] * (width - len(ids) + 1) for ids in choice_ids]
        mask = torch.zeros((n, start + width), dtype=torch.long, device=device)
        for i, ids in enumerate(choice_ids):
            mask[i, : start + max(len(ids) - 1, 1)] = 1
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        cont = model(
            input_ids=torch.tensor(rows, device=device),
            attention_mask=mask,
            position_ids=torch.arange(start, start + width, device=device).expand(n, -1),
            use_cache=True,
            **{_cache_argument(model): cache},
        )
        # The logits at position t predict choice token t + 1.
        lps = torch.log_softmax(cont.logits.float(), dim=-1)
        for i, ids in enumerate(choice_ids):
            token_lps[i] += [float(lps[i, t, ids[t + 1]]) for t in range(len(ids) - 1)]
    return [sum(lp) / len(lp) for lp in token_lps]


__all__ = [
    "category_examples",
    "mean_pool",
    "EmbeddingClassifierConfig",
    "EmbeddingClassifier",
    "new_embedding_classifier",
    "save_classifier",
    "choice_logprobs",
]
