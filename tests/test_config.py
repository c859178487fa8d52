import pytest

from course_utils import config


def test_default_profile_is_offline(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.get_profile().name == "offline"


def test_environment_variable_picks_profile(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "ci")
    assert config.get_profile().name == "ci"
    monkeypatch.setenv(config.PROFILE_ENV, " Colab ")
    assert config.get_profile().name == "colab"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(config.UnknownProfileError) as err:
        config.get_profile("laptop")
    message = str(err.value)
    assert "'laptop'" in message
    for name in ("offline", "ci", "colab", "gpu"):
        assert name in message


def test_offline_profiles_use_packages_and_gpu_profiles_use_hub():
    for name in ("offline", "ci"):
        profile = config.get_profile(name)
        assert profile.offline
        for role in (profile.chat_model, profile.base_model, profile.embedding_model):
            assert role.package and role.pip and role.hub_id is None
    for name in ("colab", "gpu"):
        profile = config.get_profile(name)
        assert not profile.offline
        assert profile.chat_model.hub_id and profile.embedding_model.hub_id


def test_gpu_profiles_default_to_ungated_models(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    gated = ("meta-llama/", "google/gemma")
    for name in ("colab", "gpu"):
        profile = config.get_profile(name)
        assert not profile.base_model.hub_id.startswith(gated)
        assert not profile.chat_model.hub_id.startswith(gated)


def test_token_unlocks_larger_base_model(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    assert config.get_profile("gpu").base_model.hub_id == "meta-llama/Llama-3.1-8B"


def test_ci_sizes_are_smaller_and_keys_match():
    offline, ci = config.get_profile("offline"), config.get_profile("ci")
    assert set(offline.sizes) == set(ci.sizes)
    assert ci.size("items_total") < offline.size("items_total")
    assert offline.size("test_items") == 10_000


def test_unknown_size_names_known_ones():
    with pytest.raises(KeyError, match="eval_items"):
        config.get_profile("ci").size("no_such_size")


def test_paths_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results"))
    assert config.cache_dir() == tmp_path / "cache" and config.cache_dir().is_dir()
    assert config.get_profile("ci").work_dir == tmp_path / "results" / "ci"


def test_repo_root_holds_notebooks(repo_root):
    assert config.repo_root() == repo_root
    assert config.data_dir() == repo_root / "data"
