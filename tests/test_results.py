"""The results store: keyed entries, replacement on re-run, leaderboard, predictions."""

import json
import threading

import pytest

from course_utils.core import config
from course_utils.pricing import results


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    monkeypatch.setattr(results, "_current_data_version", lambda profile: "v1")
    return tmp_path


def metrics(rmsle, mae=10.0):
    return {"rmsle": rmsle, "mae": mae, "hit_rate": 0.5, "median_ae": 5.0, "n_items": 100}


def test_record_replaces_an_entry_with_the_same_key(store):
    ci = config.get_profile("ci")
    results.record("ridge", metrics(0.6), profile=ci)
    results.record("ridge", metrics(0.5), profile=ci)
    results.record("ridge", metrics(0.55), profile=ci, split="test")
    results.record("ridge", metrics(0.7), profile=ci, data_version="v0")
    frame = results.load_results(ci)
    assert len(frame) == 3
    current = frame[(frame.split == "eval") & (frame.data_version == "v1")]
    assert current.rmsle.tolist() == [0.5]
    stored = json.loads((store / "results.json").read_text())
    assert {e["profile"] for e in stored["entries"]} == {"ci"}


def test_leaderboard_is_best_first_on_one_split_and_data_version(store):
    ci = config.get_profile("ci")
    for name, value in [("mean", 0.82), ("ridge", 0.49), ("median", 0.75)]:
        results.record(name, metrics(value), profile=ci, extra={"kind": "baseline"})
    results.record("old", metrics(0.1), profile=ci, data_version="v0")
    results.record("other profile", metrics(0.2), profile=config.get_profile("offline"))
    board = results.leaderboard(ci)
    assert board.model.tolist() == ["ridge", "median", "mean"]
    assert board.index.tolist() == [1, 2, 3] and (board.kind == "baseline").all()
    assert not board.blend.any()
    results.record("stack", metrics(0.3), profile=ci, extra={"kind": "baseline", "blend": True})
    assert results.leaderboard(ci).set_index("model").blend.to_dict() == {"stack": True, "ridge": False, "median": False, "mean": False}
    assert results.leaderboard(ci, data_version=None).model.iloc[0] == "old"
    assert len(results.load_results(all_profiles=True)) == 6


def test_concurrent_records_are_all_kept(store):
    ci = config.get_profile("ci")
    threads = [threading.Thread(target=results.record, args=(f"m{i}", metrics(0.5 + i / 100)), kwargs={"profile": ci}) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results.load_results(ci)) == 8


def test_predictions_round_trip_and_clear_errors(store):
    ci = config.get_profile("ci")
    path = results.save_predictions("LLM / v2", "eval", {"a": 1, "b": 2.5}, profile=ci)
    assert path.is_file() and path.parent.name == "eval"
    assert results.load_predictions("LLM / v2", "eval", ci) == {"a": 1.0, "b": 2.5}
    assert results.list_predictions("eval", ci) == ["LLM / v2"]
    with pytest.raises(results.MissingPredictionsError, match="LLM / v2"):
        results.load_predictions("forest", "eval", ci)
    results.save_predictions("stale", "eval", {"a": 1}, profile=ci, data_version="v0")
    with pytest.raises(results.MissingPredictionsError, match="evaluate the model again"):
        results.load_predictions("stale", "eval", ci)
    assert results.load_predictions("stale", "eval", ci, check_version=False) == {"a": 1.0}


def test_plot_leaderboard(store):
    import matplotlib

    matplotlib.use("Agg")
    ci = config.get_profile("ci")
    results.record("a", metrics(0.5), profile=ci)
    results.record("b", metrics(0.6), profile=ci)
    ax = results.plot_leaderboard(results.leaderboard(ci))
    assert len(ax.patches) == 2
    with pytest.raises(ValueError):
        results.plot_leaderboard(results.leaderboard(ci, split="nothing"))


def test_corrupt_store_gives_a_clear_error(store):
    (store / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.load_results(config.get_profile("ci"))


def test_rows_a_language_model_answered_name_it_and_the_chat_pricers_get_their_own_table(store, monkeypatch):
    from course_utils.pricing import data, leaderboard

    monkeypatch.setattr(data, "data_version", lambda profile: "v1")
    ci = config.get_profile("ci")
    results.record("ridge", metrics(0.5), profile=ci, extra={"kind": "baseline"})
    results.record("rag-frontier", metrics(0.6), profile=ci, extra={"kind": "rag", "llm": "smollm2-135m"})
    results.record("qwen2.5-coder-1.5b zero-shot", metrics(0.7), profile=ci, split="eval_llm", extra={"llm": "qwen2.5-coder-1.5b"})
    results.record("constant median", metrics(0.8), profile=ci, split="eval_llm", extra={"kind": "baseline"})
    board = results.leaderboard(ci)
    llms = board.set_index("model").llm
    assert llms["rag-frontier"] == "smollm2-135m" and llms.isna()["ridge"]
    text = leaderboard.write_leaderboard(ci, folder=store)
    assert "| smollm2-135m |" in text and "split eval_llm" in text
    head = text.split("split eval_llm")[1]
    assert head.index("qwen2.5-coder-1.5b zero-shot") < head.index("constant median")  # best first there too
    assert "eval_llm" in (store / "leaderboard.md").read_text()
