"""The specialist pricer: digit tokens, batched greedy and probability-weighted decoding."""

import math

import pytest

from course_utils.core import config
from course_utils.pricing import specialist
from course_utils.pricing.items import PRICE_PREFIX, Item


def test_weighted_log_price_is_a_log_scale_average():
    assert specialist.weighted_log_price([(10, 0.5), (1000, 0.5)]) == pytest.approx(math.expm1((math.log1p(10) + math.log1p(1000)) / 2))
    assert specialist.weighted_log_price([(25, 3.0)]) == pytest.approx(25)
    assert specialist.weighted_log_price([(10, 1), (20, 1)]) == pytest.approx(specialist.weighted_log_price([(10, 0.5), (20, 0.5)]))
    with pytest.raises(ValueError, match="positive sum"):
        specialist.weighted_log_price([(10, 0.0)])


def test_bad_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="greedy"):
        specialist.SpecialistPricer(None, None, mode="beam")


ITEMS = [
    Item(id="a", title="Apple iPhone 12 Pro Max 256GB unlocked", categories=("Electronics", "Cell Phones"), brand="Apple", condition="Like new", price=650),
    Item(id="b", title="Plain white t-shirt, size M", categories=("Women", "Tops"), condition="Used", price=6),
    Item(id="c", title="Lego Star Wars Millennium Falcon set, sealed box", categories=("Kids", "Toys"), brand="LEGO", price=120),
]


@pytest.fixture(scope="module")
def smollm2():
    from course_utils.foundations import models

    profile = config.get_profile("ci")
    return models.load_causal_lm("base_model", profile, device="cpu"), models.load_tokenizer("base_model", profile)


@pytest.mark.slow
def test_digit_tokens_of_smollm2(smollm2):
    _, tokenizer = smollm2
    digits, starts = specialist.number_tokens(tokenizer)
    assert {digits[i] for i in digits} >= set("0123456789")
    assert all(not digits[i].startswith("0") for i in starts)
    assert len(starts) >= 9


@pytest.mark.slow
def test_prompt_ends_where_the_digits_begin(smollm2):
    _, tokenizer = smollm2
    text = specialist.prompt_text(tokenizer, ITEMS[0])
    assert text.endswith(PRICE_PREFIX) and "iPhone" in text and "<|im_start|>assistant" in text


@pytest.mark.slow
def test_greedy_matches_transformers_generate(smollm2):
    """Our KV-cached digit loop must read the same price as model.generate would write."""
    import torch

    model, tokenizer = smollm2
    compared = 0
    for item in ITEMS:
        prediction = specialist.predict_batch(model, tokenizer, [item], top_k=3)[0]
        ids = tokenizer(specialist.prompt_text(tokenizer, item), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
        digits = ""
        for ch in text:
            if not ch.isdigit():
                break
            digits += ch
        if digits and not digits.startswith("0"):  # generate may start with a non-digit; ours never does
            assert prediction.greedy == float(digits[:5])
            compared += 1
    assert compared >= 2, f"generate wrote a leading digit for only {compared} of {len(ITEMS)} items: nothing to compare"


@pytest.mark.slow
def test_batching_with_left_padding_changes_nothing(smollm2):
    model, tokenizer = smollm2
    together = specialist.predict_batch(model, tokenizer, ITEMS, top_k=3)
    alone = [specialist.predict_batch(model, tokenizer, [item], top_k=3)[0] for item in ITEMS]
    for a, b in zip(together, alone):
        assert a.greedy == b.greedy
        assert a.weighted == pytest.approx(b.weighted, rel=1e-3)
        assert [p for p, _ in a.candidates] == [p for p, _ in b.candidates]


@pytest.mark.slow
def test_weighted_price_combines_the_candidates(smollm2):
    model, tokenizer = smollm2
    for prediction in specialist.predict_batch(model, tokenizer, ITEMS, top_k=4):
        prices = [p for p, _ in prediction.candidates]
        weights = [w for _, w in prediction.candidates]
        assert len(prices) == 4 and sum(weights) == pytest.approx(1.0)
        assert weights == sorted(weights, reverse=True) and prediction.greedy == prices[0]
        assert min(prices) <= prediction.weighted <= max(prices)
        assert 0 < prediction.number_mass <= 1
    assert specialist.predict_batch(model, tokenizer, ITEMS[:1], top_k=1)[0].weighted == pytest.approx(
        specialist.predict_batch(model, tokenizer, ITEMS[:1], top_k=1)[0].greedy)


@pytest.mark.slow
def test_pricer_modes_share_one_pass_and_leave_training_mode_alone(smollm2):
    model, tokenizer = smollm2
    model.train()
    greedy = specialist.SpecialistPricer(model, tokenizer, "greedy", top_k=3)
    predictions = greedy.prefetch(ITEMS, progress=False)
    assert model.training  # predict switched to eval mode and back
    model.eval()
    weighted = greedy.with_mode("weighted")
    assert [greedy(it) for it in ITEMS] == [p.greedy for p in predictions]
    assert [weighted(it) for it in ITEMS] == [p.weighted for p in predictions]


@pytest.mark.slow
def test_timed_predict_reports_timings(smollm2):
    model, tokenizer = smollm2
    predictions, timings = specialist.timed_predict(model, tokenizer, ITEMS[:2], top_k=2, progress=False)
    assert len(predictions) == 2 and timings["predict_s"] >= 0 and timings["ms_per_item"] >= 0
