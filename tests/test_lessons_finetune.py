"""Notebooks 10 and 11 write their lesson code in cells; the package keeps the same code for notebook 09,
notebook 11's loaders and the benchmarks. These tests run those cells and check that the two agree."""

import math

import pytest

from course_utils.core import config
from course_utils.foundations import models
from course_utils.pricing import qlora, specialist, training

from notebook_cells import cell_namespace

QLORA = "10_qlora.ipynb"
EVALUATING = "11_evaluating_the_finetune.ipynb"
PROFILES = ("ci", "offline", "colab", "gpu")


def test_bitsandbytes_config_cell_is_the_package_one():
    cell = cell_namespace(QLORA, "bnb_config = BitsAndBytesConfig(")
    assert cell["bnb_config"].to_dict() == models.quantization_config("4bit").to_dict()


@pytest.mark.parametrize("name", PROFILES)
def test_lora_config_cell_is_the_package_one(name):
    profile = config.get_profile(name)
    cell = cell_namespace(QLORA, "lora_config = LoraConfig(", profile=profile, bnb_config=None, compute_dtype=None)
    assert cell["lora_config"].to_dict() == qlora.lora_config(profile).to_dict()
    assert callable(cell["new_qlora_model"]) and callable(cell["load_4bit_base"])


@pytest.mark.parametrize("name", PROFILES)
def test_sft_config_cell_is_the_package_one_plus_validation(name, tmp_path, monkeypatch):
    """The cell measures the validation loss too; apart from those settings it is `training.sft_config(quantized=True)`."""
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile(name)
    args = cell_namespace(QLORA, "args = SFTConfig(", profile=profile)["args"]
    package = training.sft_config(args.output_dir, profile, quantized=True, eval_strategy="steps",
                                  eval_steps=profile.size("qlora_save_steps"), per_device_eval_batch_size=profile.size("batch_size"))
    cell, expected = args.to_dict(), package.to_dict()
    for volatile in ("logging_dir",):  # derived from the clock when not given
        cell.pop(volatile, None), expected.pop(volatile, None)
    assert cell == expected
    assert args.max_steps == profile.size("qlora_max_steps") and args.completion_only_loss


from test_specialist import ITEMS  # the same three listings the specialist's own tests price


@pytest.fixture(scope="module")
def smollm2():
    profile = config.get_profile("ci")
    return models.load_causal_lm("base_model", profile, device="cpu"), training.ensure_chat_template(models.load_tokenizer("base_model", profile))


@pytest.mark.slow
@pytest.mark.parametrize("top_k", [1, 3])
def test_read_price_cell_agrees_with_the_batched_package_pricer(smollm2, top_k):
    model, tokenizer = smollm2
    read_price = cell_namespace(EVALUATING, "def read_price(")["read_price"]
    digits = cell_namespace(EVALUATING, "def read_price(")["number_tokens"](tokenizer)
    assert digits == specialist.number_tokens(tokenizer)[0]
    batched = specialist.predict_batch(model, tokenizer, ITEMS, top_k=top_k)
    for item, package in zip(ITEMS, batched):
        greedy, weighted, candidates = read_price(model, tokenizer, item, top_k=top_k, digits=digits)
        assert greedy == package.greedy
        assert weighted == pytest.approx(package.weighted, rel=1e-3)
        assert [p for p, _ in candidates] == [p for p, _ in package.candidates]
        assert [w for _, w in candidates] == pytest.approx([w for _, w in package.candidates], rel=1e-3)
        if top_k == 1:
            assert weighted == pytest.approx(greedy)
        else:
            assert math.isclose(sum(w for _, w in candidates), 1.0, rel_tol=1e-6)


@pytest.mark.slow
def test_score_readings_cell_stores_both_readings_of_one_pass_per_split(smollm2, tmp_path, monkeypatch):
    from course_utils.pricing import data, evaluation, results

    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    monkeypatch.setattr(results, "_current_data_version", lambda profile: "test-data")
    monkeypatch.setattr(data, "data_version", lambda profile=None, *a, **k: "test-data")
    monkeypatch.setattr(evaluation, "_check_split", lambda *a, **k: None)
    model, tokenizer = smollm2
    profile = config.get_profile("ci")
    cell = cell_namespace(EVALUATING, "def score_readings(", tokenizer=tokenizer, batch_size=2, top_k=2, profile=profile)
    predictions, scored = cell["score_readings"](model, "tiny", {"eval": ITEMS[:2], "ensemble_val": ITEMS[2:]}, kind="llm")
    assert [len(predictions[s]) for s in ("eval", "ensemble_val")] == [2, 1]
    assert set(scored["eval"]) == {"tiny-greedy", "tiny-weighted"}
    for mode in ("greedy", "weighted"):
        stored = results.load_predictions(f"tiny-{mode}", "ensemble_val", profile)
        assert stored == {ITEMS[2].id: pytest.approx(max(0.0, getattr(predictions["ensemble_val"][0], mode)))}
    assert scored["eval"]["tiny-greedy"].timings == scored["eval"]["tiny-weighted"].timings  # one pass, shared
