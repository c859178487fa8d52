"""Pooling, the embedding classifier behind pipeline(), zero-shot scoring, decoding (course_utils.pipelines)."""

from __future__ import annotations

import pytest
import torch

from course_utils import pipelines as P


def test_mean_pool_ignores_padding_and_normalises():
    vectors = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = P.mean_pool(vectors, mask, normalize=False)
    assert torch.allclose(pooled, torch.tensor([[2.0, 0.0]]))
    assert torch.allclose(P.mean_pool(vectors, mask).norm(dim=-1), torch.ones(1))


def test_cosine_matrix():
    sims = P.cosine_matrix(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    assert sims.shape == (3, 3)
    assert torch.allclose(sims.diag(), torch.ones(3))
    assert sims[0, 1] == pytest.approx(0.0)
    assert sims[0, 2] == pytest.approx(2**-0.5)


def test_accuracy_and_its_errors():
    assert P.accuracy(["a", "b", "a"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="predictions for"):
        P.accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no labels"):
        P.accuracy([], [])


def test_prompt_task_errors_name_the_problem():
    with pytest.raises(KeyError, match="known tasks"):
        P.prompt_task(None, "poetry", "text")
    with pytest.raises(ValueError, match="rule"):
        P.prompt_task(None, "check rule", "text")  # the rule is missing


def test_category_examples_are_balanced_and_labelled():
    frame = P.category_examples(100, seed=0)
    counts = frame["label"].value_counts()
    assert len(counts) == 10 and counts.max() == counts.min() == 10
    assert frame["text"].str.len().min() > 0
    train, test = P.split(frame, test_fraction=0.2, seed=0)
    assert len(test) == 20 and set(train.index).isdisjoint(test.index)


def _tiny_classifier(labels):
    cfg = P.EmbeddingClassifierConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64
    )
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    return P.EmbeddingClassifier(cfg).eval()


def test_fit_head_separates_separable_vectors():
    model = _tiny_classifier(["cat", "dog"])
    vectors = torch.nn.functional.normalize(torch.randn(40, 16), dim=-1)
    labels = ["cat" if v[0] > 0 else "dog" for v in vectors]
    losses = P.fit_head(model, vectors, labels, epochs=200)
    assert losses[-1] < losses[0] * 0.5
    predicted = [model.config.id2label[i] for i in model.classifier(vectors).argmax(1).tolist()]
    assert P.accuracy(predicted, labels) >= 0.9
    with pytest.raises(ValueError, match="not in the model's label set"):
        P.fit_head(model, vectors[:2], ["cat", "bird"])


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


def test_strategies_cover_the_five_kinds():
    names = " ".join(P.STRATEGIES)
    for kind in ["greedy", "beam", "top-k", "top-p", "temperature"]:
        assert kind in names


@pytest.mark.slow
def test_trained_classifier_works_through_text_classification_pipeline(tmp_path):
    frame = P.category_examples(120, seed=0)
    train, test = P.split(frame, test_fraction=0.25, seed=0)
    labels = sorted(frame["label"].unique())
    model, tokenizer = P.new_embedding_classifier(labels)
    vectors = P.embed_texts(model, tokenizer, list(train["text"]), progress=False)
    P.fit_head(model, vectors, list(train["label"]))
    folder = P.save_classifier(model, tokenizer, tmp_path / "clf")
    P.save_classifier(model, tokenizer, folder)  # saving again replaces the folder cleanly
    clf = P.classification_pipeline(folder)
    predicted = P.pipeline_labels(clf, list(test["text"]))
    assert set(predicted) <= set(labels)
    # Ten balanced classes: chance is 10%; a head on MiniLM does far better even on 90 listings.
    assert P.accuracy(predicted, list(test["label"])) > 0.3


@pytest.mark.slow
def test_zero_shot_by_similarity_picks_the_closest_description():
    from course_utils import models

    embedder = models.load_embedding_model()
    texts = ["iPhone 12 with charger, screen like new", "lipstick and mascara set, unopened", "baby stroller and toddler toys"]
    labels = list(P.CATEGORY_DESCRIPTIONS)
    assert P.zero_shot_by_similarity(embedder, texts, labels, P.CATEGORY_DESCRIPTIONS) == ["Electronics", "Beauty", "Kids"]
    # Without descriptions the bare label names are what gets embedded.
    bare = P.zero_shot_by_similarity(embedder, texts, labels)
    assert bare == P.zero_shot_by_similarity(embedder, texts, labels, {label: label for label in labels})
    assert set(bare) <= set(labels)


@pytest.mark.slow
def test_chat_model_scores_and_decodes():
    from course_utils import models

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
    dist = P.next_token_distribution(model, tokenizer, "Say hello.", top=5)
    assert len(dist) == 5 and dist["probability"].is_monotonic_decreasing
    assert 0 < dist["probability"].sum() <= 1.0 + 1e-6
    sweep = P.temperature_sweep(model, tokenizer, "Say hello.", temperatures=(0.5, 2.0), top=3)
    # A lower temperature gives the top token more of the probability mass.
    assert sweep.iloc[0]["T=0.5"] > sweep.iloc[0]["T=2.0"]
    table = P.generate_with_strategies(model, tokenizer, "Say hello.", {"greedy": {"do_sample": False}}, max_new_tokens=5)
    assert table.loc["greedy", "reply"]
    # Zero-shot by prompting returns, per text, the label with the highest choice_logprobs.
    texts, labels = ["Paris is the capital of this country."], ["France", "Japan"]
    picked = P.zero_shot_by_prompt(model, tokenizer, texts, labels, question="Which country is this about?", progress=False)
    asked = [{"role": "user", "content": f"Which country is this about?\nOptions: France, Japan\n\nText: {texts[0]}\n\nAnswer with the option only."}]
    scores = P.choice_logprobs(model, tokenizer, asked, labels)
    assert picked == [labels[scores.index(max(scores))]] == ["France"]
    chat = P.chat_pipeline(model=model, tokenizer=tokenizer)
    assert P.reply(chat, "Say hello.", max_new_tokens=8)
    jobs = [("translate", "The shoes ship tomorrow.", {}), ("check rule", "Call 555-0100", {"rule": "No phone numbers."})]
    tasks = P.run_tasks(chat, jobs, max_new_tokens=6)
    assert list(tasks.index) == ["translate", "check rule"] and tasks["reply"].str.len().min() > 0
    assert tasks.loc["check rule", "input"] == "Call 555-0100"
    with pytest.raises(ValueError, match="needs the field 'rule'"):
        P.run_tasks(chat, [("check rule", "text", {})])
