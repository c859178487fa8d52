"""Pooling, the embedding classifier behind pipeline(), zero-shot scoring (course_utils.foundations.pipelines).

The lesson code notebook 02 writes in its cells is tested in test_lessons_foundations.py.
"""

from __future__ import annotations

import pytest
import torch

from course_utils.foundations import pipelines as P


def test_mean_pool_ignores_padding_and_normalises():
    vectors = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = P.mean_pool(vectors, mask, normalize=False)
    assert torch.allclose(pooled, torch.tensor([[2.0, 0.0]]))
    assert torch.allclose(P.mean_pool(vectors, mask).norm(dim=-1), torch.ones(1))


def test_category_examples_are_balanced_and_labelled():
    frame = P.category_examples(100, seed=0)
    counts = frame["label"].value_counts()
    assert len(counts) == 10 and counts.max() == counts.min() == 10
    assert frame["text"].str.len().min() > 0
    assert P.category_examples(100, seed=0).equals(frame)  # deterministic sample


def _tiny_classifier(labels):
    cfg = P.EmbeddingClassifierConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64
    )
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    return P.EmbeddingClassifier(cfg).eval()


def test_saved_classifier_loads_through_auto_classes(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _tiny_classifier(["a", "b", "c"])
    ids = torch.tensor([[1, 2, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    before = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, P.EmbeddingClassifier)
    assert torch.allclose(loaded(input_ids=ids, attention_mask=mask).logits, before, atol=1e-6)
    out = loaded(input_ids=ids, attention_mask=mask, labels=torch.tensor([2]))
    assert out.loss is not None and out.logits.shape == (1, 3)


@pytest.mark.slow
def test_choice_logprobs_equals_scoring_each_whole_sequence():
    from course_utils.foundations import models

    model = models.load_causal_lm()
    tokenizer = models.load_tokenizer()
    messages = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    scores = P.choice_logprobs(model, tokenizer, messages, ["Paris", "Banana"])
    assert scores[0] > scores[1]
    # The batched, cached scoring equals scoring each whole sequence on its own.
    choices = ["Paris", "Vintage & Collectibles", "Home", "the city of Lyon in France"]
    batched = P.choice_logprobs(model, tokenizer, messages, choices)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for choice, score in zip(choices, batched):
        ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
        lps = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
        direct = float(lps[torch.arange(len(ids)), torch.tensor(ids)].mean())
        assert score == pytest.approx(direct, abs=1e-3), choice
