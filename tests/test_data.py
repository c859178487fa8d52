"""Loading, curation, prompt capping and cached splits of the product listings."""

import json
from collections import Counter
from dataclasses import replace

import pytest

from course_utils.core import config
from course_utils.foundations import listings
from course_utils.pricing import curation, data
from course_utils.pricing.items import Item


# --- scrubbing and row parsing ----------------------------------------------------------
def test_scrub_removes_boilerplate_marks_and_codes_but_keeps_model_names():
    counter = Counter()
    assert listings.scrub("No description yet", counter) == ""
    assert listings.scrub("  Great [rm] deal   B07XJ8C8F5 iPhone6s 10000mAh ", counter) == "Great deal iPhone6s 10000mAh"
    assert listings.scrub(None) == "" and listings.scrub(float("nan")) == ""
    assert counter == {"boilerplate description removed": 1, "[rm] price marks removed": 1, "long codes removed": 1}


def mercari_row(**kw):
    row = dict(train_id=1, name="Lululemon leggings", item_condition_id=2, category_name="Women/Athletic Apparel/Pants, Tights, Leggings",
               brand_name="Lululemon", price=38.0, shipping=1, item_description="Size 6, worn twice")
    row.update(kw)
    return row


def test_parse_mercari_row_builds_an_item():
    item = curation.parse_mercari_row(mercari_row())
    assert item.id == "mercari-1" and item.price == 38.0
    assert item.categories == ("Women", "Athletic Apparel", "Pants, Tights, Leggings")
    assert item.condition == "Like new" and item.shipping_paid_by_seller is True and item.brand == "Lululemon"


def test_category_with_slashes_keeps_three_levels():
    item = curation.parse_mercari_row(mercari_row(category_name="Electronics/Computers & Tablets/iPad/Tablet/eBook Readers"))
    assert item.categories == ("Electronics", "Computers & Tablets", "iPad/Tablet/eBook Readers")


def test_parse_rows_counts_every_dropped_row_with_its_reason():
    rows = [
        mercari_row(train_id=1),
        mercari_row(train_id=2, price=0),
        mercari_row(train_id=3, price=-4),
        mercari_row(train_id=4, price=None),
        mercari_row(train_id=5, price="abc"),
        mercari_row(train_id=6, name="", item_description="No description yet"),
        mercari_row(train_id=7, category_name=None, brand_name=float("nan")),
    ]
    items, report = curation.parse_rows(rows, curation.parse_mercari_row, "fixture")
    assert [it.id for it in items] == ["mercari-1", "mercari-7"]
    assert report.dropped == {"price not positive": 2, "missing price": 1, "price not a number": 1, "no usable text": 1}
    assert report.rows_read == 7 and report.kept == 2 and report.balanced
    assert items[1].category == "Unknown" and items[1].brand is None
    table = report.table()
    assert table.loc[table.reason == "price not positive", "rows"].item() == 2


def test_bad_codes_and_missing_ids_are_counted_drops_not_crashes():
    rows = [
        mercari_row(train_id=1, item_condition_id="new"),
        mercari_row(train_id=2, shipping=float("nan"), item_condition_id=float("nan")),
        mercari_row(train_id=3, shipping="yes"),
        mercari_row(train_id=None),
        mercari_row(train_id=5, item_condition_id=2.0, shipping=0),
    ]
    items, report = curation.parse_rows(rows, curation.parse_mercari_row, "fixture")
    assert [it.id for it in items] == ["mercari-2", "mercari-5"]
    assert items[0].condition is None and items[0].shipping_paid_by_seller is None  # missing stays unknown
    assert items[1].condition == "Like new" and items[1].shipping_paid_by_seller is False
    assert report.dropped == {"bad condition": 1, "bad shipping flag": 1, "no listing id": 1}


def test_a_listings_file_without_an_id_column_is_named(tmp_path):
    import pandas as pd

    path = tmp_path / "listings.parquet"
    pd.DataFrame([{k: v for k, v in mercari_row().items() if k != "train_id"}]).to_parquet(path)
    with pytest.raises(listings.DataSourceError, match=r"lacks the columns \['train_id \(or id\)'\]"):
        curation.load_mercari(path=path)


def test_an_unknown_split_name_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: pytest.fail("loaded the splits for a bad name"))
    with pytest.raises(ValueError, match="unknown split 'validation'; use train, val, test, eval, eval_llm, ensemble_val, baseline_val"):
        data.split_items("validation")


def test_load_mercari_reads_the_real_package():
    items, report = curation.load_mercari()
    assert report.rows_read == 100_000
    assert report.balanced
    assert report.dropped["price not positive"] == 55
    assert len(items) == report.kept > 99_000
    assert all(it.price > 0 for it in items[:1000])
    assert len({it.id for it in items}) == len(items)


# --- Amazon Reviews 2023 parsing (fixture built here; the Hub is not reachable) ---------
def amazon_fixture():
    good = {
        "main_category": "All Electronics", "title": "USB-C Charger 65W", "average_rating": 4.5, "rating_number": 120,
        "features": ["GaN technology", "Foldable plug"], "description": ["Fast charger for laptops."], "price": "$29.99",
        "images": {}, "videos": {}, "store": "Anker", "categories": ["Electronics", "Chargers"],
        "details": json.dumps({"Brand": "Anker", "Best Sellers Rank": {"Electronics": 5}, "Wattage": "65 watts"}),
        "parent_asin": "B0ABC12345", "bought_together": None,
    }
    return [
        good,
        {**good, "parent_asin": "B2", "price": 15.5, "details": {"Color": "Red"}, "store": "Acme"},
        {**good, "parent_asin": "B3", "price": "None"},
        {**good, "parent_asin": "B4", "price": None},
        {**good, "parent_asin": "B5", "price": "from $5.99"},
        {**good, "parent_asin": "B6", "price": 0.0},
        {**good, "parent_asin": "B7", "title": "", "description": [], "features": [], "details": "{}"},
        {**good, "parent_asin": "B8", "details": "not json"},
    ]


def test_parse_amazon_rows_and_report():
    items, report = curation.load_amazon("Electronics", rows=amazon_fixture())
    assert [it.id for it in items] == ["amazon-B0ABC12345", "amazon-B2", "amazon-B8"]
    first = items[0]
    assert first.price == pytest.approx(29.99) and first.brand == "Anker"
    assert first.categories == ("All Electronics", "Electronics", "Chargers")
    assert "GaN technology" in first.description and "Wattage: 65 watts" in first.description
    assert "Best Sellers Rank" not in first.description
    assert items[1].brand == "Acme" and items[1].price == 15.5
    assert report.dropped == {"missing price": 2, "price not a number": 1, "price not positive": 1, "no usable text": 1}
    assert report.cleaned["unparsable details ignored"] == 1
    assert report.balanced


def test_load_amazon_limit_stops_early():
    items, report = curation.load_amazon("Electronics", rows=amazon_fixture(), limit=2)
    assert len(items) == 2 and report.rows_read == 2


# A local copy of a raw meta_<category>.jsonl whose later rows disagree with the first ones:
# the json builder infers the schema from its first chunk, so the real file crossed chunks and crashed.
def _meta_row(i: int, **changes) -> dict:
    row = {
        "main_category": "Tools & Home Improvement", "title": f"Claw hammer {i}", "average_rating": 4.5,
        "rating_number": 10, "features": ["Steel head"], "description": ["A sturdy hammer."], "price": 10.0 + i,
        "images": [{"thumb": "t.jpg", "large": "l.jpg", "variant": "MAIN", "hi_res": None}], "videos": [],
        "store": "Acme", "categories": ["Tools", "Hand Tools"], "details": {"Brand": "Acme", "Color": "Red"},
        "parent_asin": f"P{i}", "bought_together": None,
    }
    return {**row, **changes}


def _changing_meta_rows() -> list[dict]:
    first = [_meta_row(i) for i in range(40)]  # several chunks that all agree
    later = [
        _meta_row(100, details={"Material": "Steel", "Item Weight": "2 pounds"}, price="$12.99"),
        _meta_row(101, price="None"),
        _meta_row(102, price=None),
        _meta_row(103, price=7, details={"Best Sellers Rank": {"Tools": 3}, "Brand": "Zeta"}),
        _meta_row(104, price="from $5.99", details={}),
        _meta_row(105, price=5.5, images=[{"thumb": "t.jpg", "variant": "PT01"}],
                  videos=[{"title": "Demo", "url": "u", "user_id": "x"}]),
    ]
    strings_only = [_meta_row(200 + i, price="$3.50", details={"Size": "XL"}) for i in range(30)]
    return first + later + strings_only


@pytest.fixture
def meta_file(tmp_path):
    path = tmp_path / "meta_Tools_and_Home_Improvement.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in _changing_meta_rows()))
    return path


def _check_changing_meta(items, report):
    prices = {it.id: it.price for it in items}
    assert len(items) == 40 + 3 + 30 and report.rows_read == 76
    assert prices["amazon-P0"] == 10.0 and prices["amazon-P100"] == pytest.approx(12.99)
    assert prices["amazon-P103"] == 7.0 and prices["amazon-P105"] == 5.5 and prices["amazon-P229"] == 3.5
    assert report.dropped == {"missing price": 2, "price not a number": 1}
    by_id = {it.id: it for it in items}
    assert "Material: Steel" in by_id["amazon-P100"].description and "Color" not in by_id["amazon-P100"].description
    assert by_id["amazon-P103"].brand == "Zeta" and "Best Sellers Rank" not in by_id["amazon-P103"].description
    assert by_id["amazon-P0"].brand == "Acme" and "Color: Red" in by_id["amazon-P0"].description
    assert report.balanced


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "in-memory"])
def test_amazon_dataset_reads_a_schema_that_changes_across_chunks(meta_file, tmp_path, streaming):
    # a 4 KB chunk puts ~12 rows in each, so the new keys and price types come in later chunks
    rows = curation.amazon_dataset(
        "Tools_and_Home_Improvement", streaming=streaming, data_file=str(meta_file),
        chunksize=4096, cache_dir=str(tmp_path / "hf-cache"),
    )
    items, report = curation.load_amazon("Tools_and_Home_Improvement", rows=rows)
    _check_changing_meta(items, report)


def test_amazon_dataset_reads_the_file_in_one_default_chunk_too(meta_file):
    rows = curation.amazon_dataset("Tools_and_Home_Improvement", data_file=str(meta_file))
    _check_changing_meta(*curation.load_amazon("Tools_and_Home_Improvement", rows=rows))


# --- prompts capped in tokens -----------------------------------------------------------
@pytest.fixture(scope="module")
def word_tokenizer():
    """A real fast tokenizer (one token per word or punctuation mark), built in the test."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_cap_prompt_cuts_on_a_token_boundary(word_tokenizer):
    item = Item(id="a", title="Red bike", description=" ".join(f"word{i}" for i in range(200)), price=50)
    capped = data.cap_prompt(item, word_tokenizer, 20)
    assert item.details().startswith(capped)
    assert len(word_tokenizer(capped, add_special_tokens=False)["input_ids"]) == 20
    short = Item(id="b", title="Red bike", price=50)
    assert data.cap_prompt(short, word_tokenizer, 20) == short.details()
    with pytest.raises(ValueError):
        data.cap_prompt(item, word_tokenizer, 0)


def test_with_prompts_sets_capped_prompts(word_tokenizer):
    items = [Item(id=str(i), title=f"thing {i}", description="a b c d e f g h i j k", price=i + 1) for i in range(5)]
    out = data.with_prompts(items, word_tokenizer, 8, batch_size=2)
    assert [it.id for it in out] == [it.id for it in items]
    assert all(it.prompt and len(word_tokenizer(it.prompt, add_special_tokens=False)["input_ids"]) <= 8 for it in out)
    assert out[0].test_prompt().count("Description") == 1 and items[0].prompt is None


@pytest.mark.slow
def test_cap_prompt_with_the_chat_model_tokenizer():
    from course_utils.foundations.models import load_tokenizer

    tokenizer = load_tokenizer()
    item = Item(id="a", title="Vintage camera", description="Film camera in great shape. " * 40, price=80)
    capped = data.cap_prompt(item, tokenizer, 32)
    assert item.details().startswith(capped)
    assert len(tokenizer(capped, add_special_tokens=False)["input_ids"]) <= 32


# --- price range and category balance ---------------------------------------------------
def catalogue():
    cats = ["Women"] * 60 + ["Men"] * 25 + ["Home"] * 10 + ["Toys"] * 5
    return [Item(id=f"i{n}", title="t", categories=(c,), price=1 + n) for n, c in enumerate(cats)]


def test_balance_categories_caps_the_largest_share_and_reports_it():
    items = catalogue()
    report = curation.CurationReport("fixture", rows_read=100, kept=100)
    balanced = curation.balance_categories(items, 0.4, seed=1, report=report)
    counts = Counter(it.category for it in balanced)
    assert max(counts.values()) / len(balanced) <= 0.4 + 1 / len(balanced)
    assert counts["Toys"] == 5 and counts["Home"] == 10  # small categories keep everything
    assert report.balanced and report.kept == len(balanced)
    assert [it.id for it in curation.balance_categories(items, 0.4, seed=1)] == [it.id for it in balanced]


def test_filter_price_range_counts_what_it_removes():
    items = catalogue()
    report = curation.CurationReport("fixture", rows_read=100, kept=100)
    kept = curation.filter_price_range(items, 10, 50, report)
    assert all(10 <= it.price <= 50 for it in kept) and len(kept) == 41
    assert report.balanced and sum(report.filtered.values()) == 59


# --- splits -----------------------------------------------------------------------------
def test_make_splits_is_deterministic_disjoint_and_order_independent():
    items = catalogue()
    train, val, test = data.make_splits(items, 20, 10, seed=3)
    again = data.make_splits(list(reversed(items)), 20, 10, seed=3)
    assert [it.id for it in test] == [it.id for it in again[2]]
    ids = [it.id for part in (train, val, test) for it in part]
    assert len(ids) == len(set(ids)) == 100 and (len(train), len(val), len(test)) == (70, 10, 20)
    with pytest.raises(ValueError):
        data.make_splits(items, 60, 40, seed=3)


@pytest.fixture()
def small_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    base = config.get_profile("ci")
    sizes = {**base.sizes, "items_total": 800, "test_items": 200, "val_items": 100, "eval_items": 50, "ensemble_val_items": 40}
    data.forget_loaded_splits()
    yield replace(base, name="unit", sizes=sizes)
    data.forget_loaded_splits()


def test_load_splits_is_cached_on_disk_and_reused(small_profile):
    assert not data.splits_on_disk(small_profile, with_prompt=False)
    splits = data.load_splits(small_profile, with_prompt=False)
    assert data.splits_on_disk(small_profile, with_prompt=False) and not data.splits_on_disk(small_profile)
    assert splits.sizes() == {"train": 500, "val": 100, "test": 200}
    path = data.splits_cache_path(small_profile, splits.data_version)
    assert path.is_file() and not list(path.parent.glob(".*"))  # no temp files left behind
    mtime = path.stat().st_mtime_ns
    data.forget_loaded_splits()
    again = data.load_splits(small_profile, with_prompt=False)
    assert path.stat().st_mtime_ns == mtime  # read, not rewritten
    assert [it.id for it in again.test] == [it.id for it in splits.test]
    assert again.test[0] == splits.test[0] and isinstance(again.test[0].categories, tuple)
    assert again.report.to_dict() == splits.report.to_dict()


def test_data_version_follows_the_inputs(small_profile):
    v1 = data.data_version(small_profile)
    assert v1 == data.data_version(small_profile) and v1.startswith("mercari-")
    bigger = replace(small_profile, sizes={**small_profile.sizes, "test_items": 300})
    assert data.data_version(bigger) != v1
    assert data.data_version(replace(small_profile, seed=7)) != v1
    assert data.data_version(small_profile, max_category_share=0.3) != v1


def test_eval_and_ensemble_sets_are_fixed_slices(small_profile, monkeypatch):
    real = data.load_splits
    monkeypatch.setattr(data, "load_splits", lambda profile=None: real(profile, with_prompt=False))
    splits = real(small_profile, with_prompt=False)
    ev = data.eval_set(small_profile)
    assert len(ev) == 50 and [it.id for it in ev] == [it.id for it in data.eval_set(small_profile)]
    assert {it.id for it in ev} <= {it.id for it in splits.test}
    ens = data.ensemble_val_set(small_profile)
    assert len(ens) == 40 and {it.id for it in ens} <= {it.id for it in splits.val}
    stack = data.baseline_val_set(small_profile)
    assert {it.id for it in stack} == {it.id for it in splits.val} - {it.id for it in ens}
    assert [it.id for it in data.split_items("baseline_val", small_profile)] == [it.id for it in stack]
    head = data.split_items("eval_llm", small_profile)  # the chat pricers' share: the eval set's first items
    assert [it.id for it in head] == [it.id for it in ev[: small_profile.size("llm_eval_items")]] and head
    with pytest.raises(ValueError):
        data.split_items("holdout", small_profile)


def test_load_items_reads_the_source_the_profile_names(monkeypatch):
    """Notebook 07 shows the data the splits are made from: Mercari offline, Amazon on colab/gpu."""
    calls = []
    monkeypatch.setattr(data, "load_mercari", lambda profile: calls.append(("mercari", profile.name)) or ([], curation.CurationReport(source="mercari")))

    def fake_amazon(category, profile, limit=None):
        calls.append(("amazon", category))
        return [Item(id=f"{category}-1", title="x", categories=(category,), price=10.0)], curation.CurationReport(source=category)

    monkeypatch.setattr(data, "load_amazon", fake_amazon)
    assert data.load_items(config.get_profile("offline"))[0] == [] and calls == [("mercari", "offline")]
    calls.clear()
    items, report = data.load_items(config.get_profile("gpu"))
    assert [c[0] for c in calls] == ["amazon"] * len(curation.AMAZON_CATEGORIES)
    assert len(items) == len(curation.AMAZON_CATEGORIES) and report.source == "amazon reviews 2023"
