import pytest

from course_utils.core import config, hub_access, model_registry


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


def test_token_unlocks_larger_base_model_only_with_access(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    asked = []
    monkeypatch.setattr(hub_access, "hub_access_problem", lambda repo, token: asked.append(repo))
    assert config.get_profile("gpu").base_model.hub_id == "Qwen/Qwen2.5-7B" and asked == []  # reading a profile asks no Hub
    assert hub_access.unlock_gated_models(config.get_profile("gpu")).base_model.hub_id == "meta-llama/Llama-3.1-8B"
    assert asked == ["meta-llama/Llama-3.1-8B"]
    # a token whose owner never accepted the licence keeps the ungated default, and says why
    monkeypatch.setattr(hub_access, "hub_access_problem", lambda repo, token: "its licence is not accepted")
    with pytest.warns(UserWarning, match="cannot open meta-llama/Llama-3.1-8B"):
        profile = hub_access.unlock_gated_models(config.get_profile("gpu"))
    assert profile.base_model.hub_id == "Qwen/Qwen2.5-7B"


def test_access_check_reports_a_failure_instead_of_raising(monkeypatch):
    import huggingface_hub

    def refuse(repo_id, token=None):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "auth_check", refuse)
    assert hub_access.hub_access_problem("meta-llama/x-test", "hf_" + "y" * 30) == "ConnectionError"


def test_token_from_colab_secrets_counts(monkeypatch):
    import sys
    import types

    monkeypatch.delenv("HF_TOKEN", raising=False)
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda name: {"HF_TOKEN": "hf_" + "z" * 30}[name])
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(hub_access, "hub_access_problem", lambda repo, token: None)
    assert hub_access.unlock_gated_models(config.get_profile("colab")).base_model.hub_id == "meta-llama/Llama-3.2-3B"


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


def test_folders_from_the_environment_expand_home_and_anchor_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_RESULTS", "~/llm-results")  # as written in a .env, which does not expand ~
    assert config.results_dir() == tmp_path / "llm-results"
    monkeypatch.setenv("COURSE_RESULTS", "build/test-results-relative")  # the same folder from any working directory
    monkeypatch.chdir(tmp_path)
    checkout = tmp_path / "checkout"  # stands in for the real one, which a test run must leave as it found it
    monkeypatch.setattr(config, "repo_root", lambda: checkout)
    assert config.results_dir() == checkout / "build" / "test-results-relative"
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "a-file"))
    with pytest.raises(ValueError, match="COURSE_CACHE=.*names a file, not a folder"):
        config.cache_dir()


def test_repo_root_holds_notebooks(repo_root):
    assert config.repo_root() == repo_root
    # the course's data lives once in git, in data/; the package reaches it through a link
    assert config.data_dir() == repo_root / "src" / "course_utils" / "course_data"
    assert config.data_dir().resolve() == repo_root / "data" and (repo_root / "data" / "rag_questions.jsonl").is_file()


def test_the_installed_package_carries_the_course_data(repo_root, tmp_path):
    """Colab pip-installs the package from git, without the checkout: notebook 05's knowledge
    base and question set must travel inside the wheel."""
    import subprocess
    import sys
    import zipfile

    import shutil

    # Built from a copy: setuptools reuses the files an earlier build left in build/lib.
    source = tmp_path / "checkout"
    # the checkout's layout as git has it: data/ once, and src/course_utils/course_data a link to it
    shutil.copytree(repo_root / "src", source / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copytree(repo_root / "data", source / "data")
    assert (source / "src" / "course_utils" / "course_data").is_symlink()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("course_utils-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    data = config.data_dir()
    expected = {f"course_utils/course_data/{p.relative_to(data).as_posix()}" for p in data.rglob("*") if p.is_file()}
    assert len(expected) > 20 and "course_utils/course_data/rag_questions.jsonl" in expected
    assert expected <= shipped, sorted(expected - shipped)[:5]


def test_full_fine_tune_model_fits_the_profile():
    for name in ("offline", "ci"):
        profile = config.get_profile(name)
        assert profile.sft_model == profile.chat_model  # the 135M model is small enough to train fully
    for name in ("colab", "gpu"):
        profile = config.get_profile(name)
        assert profile.sft_model.hub_id and profile.sft_model != profile.chat_model
        assert any(size in profile.sft_model.hub_id for size in ("135M", "360M", "0.5B"))


def test_each_profile_names_a_model_for_every_server_role():
    for profile in config.PROFILES.values():
        assert profile.frontier_model.short_name and profile.bulk_model.short_name
    offline = config.get_profile("offline")
    assert offline.frontier_model is model_registry.QWEN_1_5B_GGUF and offline.frontier_model.offline
    assert offline.chat_model is model_registry.SMOLLM2_GGUF  # transformers and training keep the small model
    assert config.get_profile("ci").frontier_model is model_registry.QWEN_0_5B_GGUF
    assert offline.size("llm_eval_items") <= offline.size("eval_items")
    assert offline.frontier_model.describe().startswith("qwen2.5-coder-1.5b")
