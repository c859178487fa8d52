"""parse_price: the forms models write, and properties that must hold for any text."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.pricing.prices import NoPriceError, format_price, parse_price, price_or_fallback


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$1,299.99", 1299.99),
        ("Price is $12", 12.0),
        ("Price is $12.00", 12.0),
        ("about 20 dollars", 20.0),
        ("I'd say 10-20", 15.0),
        ("$10 - $20", 15.0),
        ("between 30 and 50 dollars", 40.0),
        ("10 to 20", 15.0),
        ("Model 3000, price $45", 45.0),
        ("Ships in 2-3 days. Price: $40", 40.0),
        ("roughly 1.5k", 1500.0),
        ("$.99", 0.99),
        ("  42  ", 42.0),
    ],
)
def test_parses_the_forms_models_write(text, expected):
    assert parse_price(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "I cannot tell", "no idea, sorry", "$0", "-5", "Price is $", None])
def test_no_usable_price_gives_none(text):
    assert parse_price(text) is None


def test_fallback_is_used_only_when_needed_and_must_be_valid():
    assert price_or_fallback("about 20 dollars", 17.0) == 20.0
    assert price_or_fallback("no idea", 17.0) == 17.0
    with pytest.raises(NoPriceError, match="fallback"):
        price_or_fallback("no idea", 0)


def test_non_text_is_a_clear_error():
    with pytest.raises(TypeError, match="expects text"):
        parse_price(12)


prices = st.floats(min_value=0.01, max_value=1_000_000, allow_nan=False).map(lambda v: round(v, 2)).filter(lambda v: v > 0)
no_digits = st.text(alphabet=st.characters(blacklist_categories=("Nd",), blacklist_characters="$.,-–—0123456789kK"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(prices)
def test_round_trip_of_the_canonical_answer(price):
    assert parse_price(format_price(price)) == pytest.approx(price)


@settings(max_examples=200, deadline=None)
@given(prices)
def test_thousands_commas_and_dollar_sign(price):
    assert parse_price(f"${price:,.2f}") == pytest.approx(price)


@settings(max_examples=200, deadline=None)
@given(no_digits, prices, no_digits)
def test_words_around_a_dollar_price_do_not_change_it(before, price, after):
    assert parse_price(f"{before} ${price:.2f} {after}") == pytest.approx(price)


@settings(max_examples=200, deadline=None)
@given(prices, prices)
def test_a_range_gives_its_midpoint(a, b):
    low, high = sorted((a, b))
    assert parse_price(f"${low:.2f}-${high:.2f}") == pytest.approx((low + high) / 2)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_gives_none_or_a_positive_finite_price(text):
    value = parse_price(text)
    assert value is None or (math.isfinite(value) and value > 0)


@settings(max_examples=200, deadline=None)
@given(no_digits)
def test_text_without_digits_has_no_price(text):
    assert parse_price(text) is None
