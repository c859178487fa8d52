"""foundations.listings: the course's one reader of the Mercari listings, and its one text cleaning."""

from __future__ import annotations

from course_utils.foundations import listings


def test_listing_texts_come_from_mercari():
    texts = listings.listing_texts(50, seed=1)
    assert len(texts) == 50 and all(isinstance(t, str) and t for t in texts)
    assert not any("No description yet" in t for t in texts)
    assert listings.listing_texts(50, seed=1) == texts  # deterministic sample


def test_one_category_rule_and_one_cleaning_for_every_reader():
    assert listings.top_category("Women/Tops & Blouses/Blouse") == "Women"
    assert listings.top_category(None) == listings.top_category(float("nan")) == listings.top_category("  ") == listings.NO_CATEGORY
    assert listings.NO_CATEGORY != "Other"  # Mercari's "Other" is a real category, not a missing one
    assert listings.scrub("No description yet") == "" and listings.scrub("  Nike [rm] shoes ") == "Nike shoes"


def test_the_marketplace_and_the_classifier_read_through_the_same_reader():
    from course_utils.chat import marketplace
    from course_utils.foundations import pipelines

    sample = marketplace.sample_listings(30, seed=3)
    assert all(row["category"] in marketplace.CATEGORIES for row in sample)  # no listing without a category
    frame = pipelines.category_examples(60, seed=3)
    assert set(frame["label"]) <= set(marketplace.CATEGORIES)
    assert not frame["text"].str.contains("No description yet").any()


def test_the_reader_hands_out_copies():
    first = listings.read_mercari(["name", "price"], n=5, seed=1)
    first.loc[0, "name"] = "changed"
    assert listings.read_mercari(["name", "price"], n=5, seed=1).loc[0, "name"] != "changed"
