"""The Item model: price validation, derived text and prompts."""

import math

import pytest
from pydantic import ValidationError

from course_utils.pricing.items import PRICE_PREFIX, Item, PriceError, parse_listed_price


def make(**kw):
    base = dict(id="x1", title="Nintendo Switch", description="Barely used, with dock", categories=("Electronics", "Video Games"), brand="Nintendo", condition="Like new", price=210.0)
    base.update(kw)
    return Item(**base)


@pytest.mark.parametrize("value, expected", [(12, 12.0), ("$1,299.99", 1299.99), (" 7.5 ", 7.5), (0.01, 0.01), ("1,000,000", 1e6)])
def test_parse_listed_price_accepts_prices(value, expected):
    assert parse_listed_price(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "abc", 0, -3, "-2", math.nan, math.inf, True, "12.99 - 15.99"])
def test_parse_listed_price_rejects_bad_prices(value):
    with pytest.raises(PriceError):
        parse_listed_price(value)


@pytest.mark.parametrize("value", ["12,99", "1,2,3", "1,,5", "12,3456"])
def test_a_comma_that_does_not_separate_thousands_is_refused_not_dropped(value):
    # removing it would turn a decimal comma ("12,99") into $1299
    with pytest.raises(PriceError, match="commas may only separate thousands"):
        parse_listed_price(value)


def test_item_rejects_non_positive_price():
    with pytest.raises(ValidationError):
        make(price=0)
    with pytest.raises(ValidationError):
        make(price="free")


def test_item_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        make(colour="red")


def test_category_is_top_level_or_unknown():
    assert make().category == "Electronics"
    assert make(categories=()).category == "Unknown"


def test_prompts_end_where_the_model_writes_the_price():
    item = make()
    prompt = item.test_prompt()
    assert prompt.endswith(PRICE_PREFIX)
    assert "Nintendo Switch" in prompt and "Brand: Nintendo" in prompt
    assert item.training_prompt() == prompt + "210.00"


def test_curated_prompt_replaces_details_in_text():
    item = make()
    assert item.text == item.details()
    capped = item.model_copy(update={"prompt": "Title: Nintendo Switch"})
    assert capped.text == "Title: Nintendo Switch"
    assert "Barely used" not in capped.test_prompt()
