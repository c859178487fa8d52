"""pyproject.toml is the one place for pins; environment.yml must install the same set."""

import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement


def _pyproject(repo_root):
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject(repo_root):
    sys.path.insert(0, str(repo_root / "scripts"))
    from sync_environment import pip_requirements

    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = {str(Requirement(r)) for r in pip_requirements(_pyproject(repo_root))}
    installed = {str(Requirement(r)) for r in pip_section if not r.startswith("-")}
    assert installed == declared, f"only in environment.yml: {installed - declared}; only in pyproject: {declared - installed}"


def test_sync_script_reports_no_drift(repo_root):
    result = subprocess.run([sys.executable, "scripts/sync_environment.py", "--check"], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _setup_list(repo_root, *args):
    result = subprocess.run([sys.executable, "scripts/sync_environment.py", "--print", *args], cwd=repo_root, capture_output=True, text=True)
    return result.returncode, result.stdout.split(), result.stderr


def test_setup_lists_split_the_declared_requirements(repo_root):
    """setup.sh builds llama.cpp from one list while it installs another: together they are the extras, once each."""
    project = _pyproject(repo_root)["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["cpu"] + project["optional-dependencies"]["dev"]
    rc, llama, _ = _setup_list(repo_root, "llama", "cpu,dev")
    assert rc == 0 and len(llama) == 1 and llama[0].startswith("llama-cpp-python") and "[" not in llama[0]
    rc, others, _ = _setup_list(repo_root, "others", "cpu,dev")
    assert rc == 0 and not any(r.startswith("llama-cpp-python") for r in others)
    assert len(others) + 1 == len(declared) and set(others) < set(declared)
    assert _setup_list(repo_root, "no-deps")[1] == _pyproject(repo_root)["tool"]["course_utils"]["no-deps"]


def test_setup_lists_name_a_wrong_extra_or_list(repo_root):
    rc, out, err = _setup_list(repo_root, "others", "cpu,gpu")
    assert rc != 0 and out == [] and "unknown extra 'gpu'" in err
    rc, out, err = _setup_list(repo_root, "everything")
    assert rc != 0 and "llama, others or no-deps" in err


FAST_MOVING = ("transformers", "trl", "peft", "datasets", "langchain", "chromadb", "gradio", "openai", "sentence-transformers", "bitsandbytes")


def test_fast_moving_libraries_exclude_next_major(repo_root):
    reqs = {Requirement(r).name: Requirement(r) for r in _pyproject(repo_root)["project"]["dependencies"]}
    for name in [n for n in reqs if n.startswith(FAST_MOVING)]:
        upper = [s for s in reqs[name].specifier if s.operator == "<"]
        assert upper, f"{name} has no upper bound: the next major release would reach learners untested"


def test_torch_is_pinned_only_outside_colab(repo_root):
    project = _pyproject(repo_root)["project"]
    names = lambda reqs: {Requirement(r).name for r in reqs}  # noqa: E731
    assert "torch" not in names(project["dependencies"])
    assert "torch" not in names(project["optional-dependencies"]["colab"])
    assert "torch==2.13.0" in project["optional-dependencies"]["cpu"]


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    assert "make test" in readme and "make course" in readme
    assert "exec make test" in ci


def test_colab_installs_the_same_no_deps_pin_as_setup(repo_root):
    from course_utils.core import model_registry

    pinned = _pyproject(repo_root)["tool"]["course_utils"]["no-deps"]
    assert model_registry.SMOLLM2_GGUF.pip.split()[-1] in pinned  # start() on Colab and scripts/setup.sh agree


def test_setup_refuses_a_full_disk_before_touching_anything(repo_root, tmp_path):
    _copy_setup(repo_root, tmp_path)
    env = {"PATH": "/usr/bin:/bin", "COURSE_MIN_FREE_GB": "1000000"}  # more than any disk has
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "MB free on the disk holding" in result.stderr and "needs about 1000000 GB" in result.stderr
    assert not (tmp_path / ".venv").exists()


def _copy_setup(repo_root, tmp_path):
    (tmp_path / "scripts").mkdir()
    for script in ("setup.sh", "pip_sources.sh"):
        (tmp_path / "scripts" / script).write_text((repo_root / "scripts" / script).read_text())
    (tmp_path / "pyproject.toml").write_text((repo_root / "pyproject.toml").read_text())


def test_a_venv_set_up_for_tests_serves_the_course_without_reinstalling(repo_root, tmp_path):
    import hashlib

    _copy_setup(repo_root, tmp_path)
    pins = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / f".installed-{pins}-cpu-dev").touch()
    env = {"PATH": "/usr/bin:/bin", "COURSE_MIN_FREE_GB": "1000000"}  # any install attempt would stop here
    course = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert course.returncode == 0 and course.stdout.strip() == "setup: ready (.venv, extras: cpu)", course.stderr
    # The other way round is not enough: a course-only venv lacks the test tools.
    (tmp_path / ".venv" / f".installed-{pins}-cpu-dev").rename(tmp_path / ".venv" / f".installed-{pins}-cpu")
    dev = subprocess.run(["bash", "scripts/setup.sh", "dev"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert dev.returncode == 1 and "needs about 1000000 GB" in dev.stderr


def test_setup_asks_for_a_compiler_before_downloading_anything(repo_root, tmp_path):
    """With no llama.cpp wheel at hand and no C++ compiler, set-up stops before making a venv."""
    import os

    _copy_setup(repo_root, tmp_path)
    bin_dir = tmp_path / "bin"  # this machine's commands, minus every C++ compiler
    bin_dir.mkdir()
    for folder in [f for f in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(f)]:
        for tool in os.listdir(folder):
            if "++" not in tool and not (bin_dir / tool).exists():
                (bin_dir / tool).symlink_to(os.path.join(folder, tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "COURSE_MIN_FREE_GB": "0"}
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no C++ compiler was found" in result.stderr and "COURSE_WHEELS" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_names_a_wheel_folder_that_is_not_there(repo_root, tmp_path):
    _copy_setup(repo_root, tmp_path)
    env = {"PATH": "/usr/bin:/bin", "COURSE_WHEELS": str(tmp_path / "usb" / "wheelhouse")}
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"COURSE_WHEELS={tmp_path / 'usb' / 'wheelhouse'} is not a folder" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_names_an_unknown_mode(repo_root, tmp_path):
    _copy_setup(repo_root, tmp_path)
    result = subprocess.run(["bash", "scripts/setup.sh", "everything"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown mode 'everything'; use course, dev or test" in result.stderr


def test_setup_refuses_a_python_the_course_does_not_support(repo_root, tmp_path):
    """A Python outside 3.11-3.13 is named before a venv is made (tomllib, used by setup, needs 3.11)."""
    _copy_setup(repo_root, tmp_path)
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Python 3.9.18'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "COURSE_MIN_FREE_GB": "0"}
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "needs Python 3.11-3.13" in result.stderr and "Python 3.9.18" in result.stderr
    assert not (tmp_path / ".venv").exists()
