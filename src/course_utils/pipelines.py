"""`pipeline()` on the course's offline models, and what to build when a task head is missing.

Offline there is a chat model (SmolLM2-135M-Instruct) and a sentence-embedding model
(all-MiniLM-L6-v2), but no pretrained task heads. So this module:

- wraps the chat model in a `text-generation` pipeline that takes messages;
- mean-pools `feature-extraction` output into sentence vectors and compares them;
- trains a category classifier on Mercari listings: the MiniLM encoder, mean pooling
  and a linear head, saved as a real transformers model that
  `pipeline("text-classification", model=folder)` loads (its config type is registered
  with the Auto classes when this module is imported);
- does zero-shot classification by embedding similarity and by scoring each label as
  the chat model's answer;
- shows decoding strategies and the next-token distribution.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from . import config, models
from .storage import atomic_write_dir, restore_dir

# --- text generation with messages ------------------------------------------------------


def chat_pipeline(profile: config.Profile | None = None, model=None, tokenizer=None):
    """A `text-generation` pipeline on the profile's chat model; call it with a list of messages."""
    from transformers import pipeline

    model = model if model is not None else models.load_causal_lm("chat_model", profile)
    tokenizer = tokenizer if tokenizer is not None else models.load_tokenizer("chat_model", profile)
    return pipeline("text-generation", model=model, tokenizer=tokenizer)


def reply(pipe, messages: Sequence[Mapping[str, str]] | str, max_new_tokens: int = 60, **generate_kwargs) -> str:
    """The assistant's answer to `messages` (a string is sent as one user message)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    generate_kwargs.setdefault("do_sample", False)
    out = pipe(list(messages), max_new_tokens=max_new_tokens, **generate_kwargs)
    generated = out[0]["generated_text"]
    if isinstance(generated, list):  # chat input: the conversation comes back with the new turn appended
        return generated[-1]["content"].strip()
    return str(generated).strip()


# "Out of the box" tasks, done by prompting: there is no offline seq2seq model.
TASK_PROMPTS: Mapping[str, str] = {
    "summarise": "Summarise this text in one short sentence.\n\nText: {text}",
    "translate": "Translate this text into French.\n\nText: {text}",
    "paraphrase": "Rewrite this text with different words but the same meaning.\n\nText: {text}",
    "fix grammar": "Correct the grammar and spelling of this text. Reply with the corrected text only.\n\nText: {text}",
    "check rule": "Rule: {rule}\nText: {text}\n\nDoes the text follow the rule? Answer yes or no, then give one reason.",
}


def prompt_task(pipe, task: str, text: str, max_new_tokens: int = 60, **fields) -> str:
    """Run one of TASK_PROMPTS on `text` with the chat pipeline."""
    try:
        template = TASK_PROMPTS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known tasks: {', '.join(TASK_PROMPTS)}") from None
    try:
        prompt = template.format(text=text, **fields)
    except KeyError as exc:
        raise ValueError(f"task {task!r} needs the field {exc.args[0]!r}, e.g. prompt_task(..., {exc.args[0]}='...')") from None
    return reply(pipe, prompt, max_new_tokens=max_new_tokens)


# --- embeddings and similarity ----------------------------------------------------------


def run_tasks(pipe, jobs: Sequence[tuple[str, str, Mapping[str, str]]], max_new_tokens: int = 40):
    """prompt_task for each (task, text, fields) job: a DataFrame of the task, its input and the reply."""
    import pandas as pd

    rows = [
        {"task": task, "input": text[:80], "reply": prompt_task(pipe, task, text, max_new_tokens=max_new_tokens, **fields)}
        for task, text, fields in jobs
    ]
    return pd.DataFrame(rows).set_index("task")


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


def cosine_matrix(a, b=None) -> torch.Tensor:
    """Cosine similarity of every row of `a` with every row of `b` (or of `a`)."""
    a = nn.functional.normalize(torch.as_tensor(a, dtype=torch.float32), dim=-1)
    b = a if b is None else nn.functional.normalize(torch.as_tensor(b, dtype=torch.float32), dim=-1)
    return a @ b.T


# --- labelled listings ------------------------------------------------------------------


def category_examples(n: int, seed: int = 42, per_class_cap: bool = True):
    """Mercari listings with their top-level category as the label (columns: text, label).

    With `per_class_cap`, at most n / n_classes listings per category, so the rare
    categories are not drowned out by "Women" (45% of all listings).
    """
    import pandas as pd

    from .tokens import mercari_frame

    frame = mercari_frame(None).dropna(subset=["category_name"])
    frame = frame.assign(label=frame["category_name"].str.split("/").str[0])
    desc = frame["item_description"].fillna("").replace("No description yet", "")
    frame = frame.assign(text=(frame["name"].fillna("") + ". " + desc).str.strip())
    if per_class_cap:
        cap = max(n // frame["label"].nunique(), 1)
        frame = frame.sample(frac=1.0, random_state=seed).groupby("label").head(cap)
    else:
        frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    return pd.DataFrame(frame[["text", "label"]].sample(frac=1.0, random_state=seed).reset_index(drop=True))


def split(frame, test_fraction: float = 0.25, seed: int = 42):
    """A stratified train/test split (the test part is never used for training)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(frame, test_size=test_fraction, random_state=seed, stratify=frame["label"])


# --- a classifier head on the embedding model, loadable by pipeline() --------------------


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


@torch.no_grad()
def embed_texts(model: EmbeddingClassifier, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int = 96, progress: bool = True) -> torch.Tensor:
    """Sentence vectors from the classifier's own encoder, in batches (with a progress bar)."""
    from tqdm.auto import tqdm

    chunks = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="embedding", disable=not progress):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        chunks.append(model.embed(**batch))
    return torch.cat(chunks) if chunks else torch.empty(0, model.config.hidden_size)


def fit_head(model: EmbeddingClassifier, vectors: torch.Tensor, labels: Sequence[str], epochs: int = 300, lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 42) -> list[float]:
    """Train only the linear head on frozen sentence vectors (full batch, Adam); returns the loss curve."""
    unknown = sorted(set(labels) - set(model.config.label2id))
    if unknown:
        raise ValueError(f"labels not in the model's label set: {unknown}")
    torch.manual_seed(seed)
    y = torch.tensor([model.config.label2id[label] for label in labels])
    head = model.classifier
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(head(vectors.detach()), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def save_classifier(model, tokenizer, folder: str | os.PathLike) -> Path:
    """save_pretrained into a temporary sibling, then swap it in (no half-written model on a crash)."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_write_dir(folder, write)


def classification_pipeline(folder: str | os.PathLike):
    """`pipeline("text-classification")` on a saved EmbeddingClassifier folder."""
    from transformers import pipeline

    folder = restore_dir(folder)
    return pipeline("text-classification", model=str(folder), tokenizer=str(folder), device=models.pick_device())


def accuracy(predicted: Sequence[str], actual: Sequence[str]) -> float:
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} labels")
    if not actual:
        raise ValueError("no labels to score")
    return sum(p == a for p, a in zip(predicted, actual)) / len(actual)


def pipeline_labels(clf, texts: Sequence[str], batch_size: int = 32) -> list[str]:
    return [out["label"] for out in clf(list(texts), batch_size=batch_size, truncation=True, max_length=96)]


# --- zero-shot: by embedding similarity -------------------------------------------------

# A few words per Mercari top-level category: the embedding of "Other" alone says little.
CATEGORY_DESCRIPTIONS: Mapping[str, str] = {
    "Women": "Women: women's clothing, dresses, shoes, handbags and jewelry",
    "Beauty": "Beauty: makeup, skincare, fragrance, nail polish and hair care",
    "Kids": "Kids: baby and children's clothes, toys, diapers and strollers",
    "Electronics": "Electronics: phones, video games, consoles, computers, cameras and headphones",
    "Men": "Men: men's clothing, sneakers, shirts, jeans and watches",
    "Home": "Home: home decor, kitchen, bedding, bath and furniture",
    "Vintage & Collectibles": "Vintage & Collectibles: trading cards, collectible figures, antiques and vintage items",
    "Other": "Other: books, office supplies, pet supplies and miscellaneous items",
    "Handmade": "Handmade: handmade crafts, custom jewelry, art and stickers",
    "Sports & Outdoors": "Sports & Outdoors: sports equipment, fitness gear, team jerseys and camping",
}


def zero_shot_by_similarity(embedder, texts: Sequence[str], labels: Sequence[str], descriptions: Mapping[str, str] | None = None) -> list[str]:
    """The label whose description's embedding is closest to each text's (no training at all)."""
    descriptions = descriptions or {}
    label_texts = [descriptions.get(label, label) for label in labels]
    text_vecs = torch.as_tensor(embedder.encode(list(texts), normalize_embeddings=True, show_progress_bar=False))
    label_vecs = torch.as_tensor(embedder.encode(label_texts, normalize_embeddings=True, show_progress_bar=False))
    best = cosine_matrix(text_vecs, label_vecs).argmax(dim=1)
    return [labels[i] for i in best.tolist()]


# --- zero-shot: by scoring each label as the chat model's answer --------------------------


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
            past_key_values=cache,
            use_cache=True,
        )
        # The logits at position t predict choice token t + 1.
        lps = torch.log_softmax(cont.logits.float(), dim=-1)
        for i, ids in enumerate(choice_ids):
            token_lps[i] += [float(lps[i, t, ids[t + 1]]) for t in range(len(ids) - 1)]
    return [sum(lp) / len(lp) for lp in token_lps]


def zero_shot_by_prompt(model, tokenizer, texts: Sequence[str], labels: Sequence[str], question: str = "Which category does this product listing belong to?", progress: bool = True) -> list[str]:
    """Ask the chat model and pick the label it finds most likely as its answer."""
    from tqdm.auto import tqdm

    options = ", ".join(labels)
    predictions = []
    for text in tqdm(list(texts), desc="prompting", disable=not progress):
        messages = [{"role": "user", "content": f"{question}\nOptions: {options}\n\nText: {text[:300]}\n\nAnswer with the option only."}]
        scores = choice_logprobs(model, tokenizer, messages, labels)
        predictions.append(labels[max(range(len(labels)), key=scores.__getitem__)])
    return predictions


# --- decoding strategies ----------------------------------------------------------------

STRATEGIES: Mapping[str, dict] = {
    "greedy": {"do_sample": False},
    "beam search (4 beams)": {"do_sample": False, "num_beams": 4},
    "top-k 50": {"do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 1.0},
    "top-p 0.9": {"do_sample": True, "top_k": 0, "top_p": 0.9, "temperature": 1.0},
    "temperature 0.3": {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 0.3},
    "temperature 1.5": {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.5},
}


def _chat_ids(tokenizer, messages_or_text, device):
    if isinstance(messages_or_text, str):
        messages_or_text = [{"role": "user", "content": messages_or_text}]
    text = tokenizer.apply_chat_template(list(messages_or_text), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)


@torch.no_grad()
def next_token_distribution(model, tokenizer, messages_or_text, top: int = 10, temperature: float = 1.0):
    """The `top` most likely first tokens of the reply, with their probabilities (a DataFrame)."""
    import pandas as pd

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    batch = _chat_ids(tokenizer, messages_or_text, device)
    logits = model(**batch, logits_to_keep=1).logits[0, -1].float()
    probs = torch.softmax(logits / temperature, dim=-1)
    values, ids = probs.topk(top)
    return pd.DataFrame(
        {"token": [repr(tokenizer.decode([i])) for i in ids.tolist()], "probability": values.tolist()}
    )


def temperature_sweep(model, tokenizer, messages_or_text, temperatures: Iterable[float] = (0.3, 1.0, 1.5), top: int = 8):
    """Probabilities of the same top tokens at several temperatures (columns = temperatures)."""
    import pandas as pd

    temperatures = list(temperatures)
    base = next_token_distribution(model, tokenizer, messages_or_text, top=top, temperature=1.0)
    columns = {}
    for t in temperatures:
        dist = next_token_distribution(model, tokenizer, messages_or_text, top=len(tokenizer), temperature=t)
        lookup = dict(zip(dist["token"], dist["probability"]))
        columns[f"T={t}"] = [lookup[tok] for tok in base["token"]]
    return pd.DataFrame(columns, index=base["token"])


@torch.no_grad()
def generate_with_strategies(model, tokenizer, messages_or_text, strategies: Mapping[str, dict] | None = None, max_new_tokens: int = 30, seed: int = 42):
    """The same prompt decoded under each strategy (a DataFrame: strategy, reply)."""
    import pandas as pd

    strategies = strategies or STRATEGIES
    device = next(model.parameters()).device
    batch = _chat_ids(tokenizer, messages_or_text, device)
    rows = []
    for name, kwargs in strategies.items():
        torch.manual_seed(seed)  # every sampled strategy starts from the same random state
        out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
        text = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        rows.append({"strategy": name, "reply": text.strip()})
    return pd.DataFrame(rows).set_index("strategy")


__all__ = [
    "run_tasks",
    "chat_pipeline",
    "reply",
    "TASK_PROMPTS",
    "prompt_task",
    "mean_pool",
    "cosine_matrix",
    "category_examples",
    "split",
    "EmbeddingClassifierConfig",
    "EmbeddingClassifier",
    "new_embedding_classifier",
    "embed_texts",
    "fit_head",
    "save_classifier",
    "classification_pipeline",
    "accuracy",
    "pipeline_labels",
    "CATEGORY_DESCRIPTIONS",
    "zero_shot_by_similarity",
    "choice_logprobs",
    "zero_shot_by_prompt",
    "STRATEGIES",
    "next_token_distribution",
    "temperature_sweep",
    "generate_with_strategies",
]
