import os
import signal
import socket
import sys
import time

import pytest

from course_utils.core import model_registry, secrets
from course_utils.foundations import models
from course_utils.chat import conversation, llm, marketplace, tool_calling
from needs import need_module, missing

KEY = "sk-proj-" + "k" * 40


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    """True once the process has exited (a zombie waiting to be reaped counts as gone)."""
    import psutil

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    "env, kind",
    [
        ({}, "local"),
        ({"OPENAI_API_KEY": KEY}, "openai"),
        ({"COURSE_LLM_BASE_URL": "http://localhost:11434/v1"}, "base_url"),
        ({"OPENAI_API_KEY": KEY, "COURSE_LLM_BASE_URL": "http://localhost:11434/v1"}, "base_url"),
        ({"OPENAI_API_KEY": KEY, "COURSE_LLM": "local"}, "local"),
    ],
)
def test_backend_choice(env, kind):
    assert llm.choose_backend_kind(env) == kind


def fake_colab(monkeypatch, stored: dict):
    """A stand-in for google.colab.userdata holding `stored` in its secrets panel."""
    import sys
    import types

    userdata = types.SimpleNamespace(get=lambda name: stored[name])  # raises like Colab for an absent one
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def test_a_key_in_colab_secrets_selects_openai(monkeypatch):
    from course_utils.core import secrets

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_colab(monkeypatch, {"OPENAI_API_KEY": KEY})
    assert llm.choose_backend_kind({}) == "openai"
    assert secrets.get_secret("OPENAI_API_KEY") == KEY
    fake_colab(monkeypatch, {})
    assert llm.choose_backend_kind({}) == "local"


def test_unknown_forced_backend():
    with pytest.raises(ValueError, match="not one of"):
        llm.choose_backend_kind({"COURSE_LLM": "gemini"})


def test_openai_backend_uses_key_without_calling(clean_env):
    clean_env.setenv("OPENAI_API_KEY", KEY)
    backend = llm.get_backend()
    assert backend.kind == "openai" and backend.model == llm.DEFAULT_OPENAI_MODEL
    assert str(backend.client.base_url).startswith("https://api.openai.com")
    assert KEY not in backend.describe()


def test_base_url_backend_for_ollama(clean_env):
    clean_env.setenv("COURSE_LLM_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(ValueError, match="COURSE_LLM_MODEL"):
        llm.get_backend()
    clean_env.setenv("COURSE_LLM_MODEL", "llama3.2")
    backend = llm.get_backend()
    assert backend.kind == "base_url" and str(backend.client.base_url).startswith("http://localhost:11434/v1")


def test_missing_key_for_forced_openai(clean_env):
    clean_env.setenv("COURSE_LLM", "openai")
    with pytest.raises(secrets.SecretError, match="OPENAI_API_KEY is not set"):
        llm.get_backend()


@pytest.fixture
def server():
    server = llm.LocalServer(models.gguf_path(model_registry.SMOLLM2_GGUF), n_ctx=1024)
    yield server
    server.stop()


def test_server_starts_answers_and_stops(server):
    started = time.perf_counter()
    server.start()
    pid = server.process.pid
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="local")
    assert [m.id for m in client.models.list().data] == [llm.LOCAL_MODEL_ALIAS]
    reply = client.chat.completions.create(
        model=server.alias, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0
    )
    assert reply.choices[0].message.content.strip()
    assert time.perf_counter() - started < 30
    chunks = client.chat.completions.create(
        model=server.alias, messages=[{"role": "user", "content": "Count to three"}], max_tokens=8, stream=True
    )
    assert sum(1 for _ in chunks) > 1
    server.stop()
    assert not server.is_running()
    assert wait_gone(pid)


def test_port_in_use_is_reported(server):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server.requested_port = blocker.getsockname()[1]
        with pytest.raises(llm.PortInUseError, match=str(server.requested_port)):
            server.start()


def test_failed_start_shows_log_tail(tmp_path):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    server = llm.LocalServer(bogus, log_path=tmp_path / "server.log")
    with pytest.raises(llm.ServerStartError, match="log tail") as err:
        server.start(timeout=60)
    assert "exited with code" in str(err.value)
    assert not server.is_running()


def test_embedded_server_is_reused_within_a_process(clean_env):
    try:
        first = llm.get_backend()
        second = llm.get_backend()
        assert first.kind == "local" and first.base_url == second.base_url
        assert llm.local_server() is llm.local_server()
        pid = llm.local_server().process.pid
        assert first.chat([{"role": "user", "content": "Hello"}], max_tokens=4)
    finally:
        llm.stop_local_server()
    assert not llm._SERVERS
    assert wait_gone(pid)


def test_server_dies_with_its_parent(tmp_path):
    """A killed kernel must not leave the server running (the watcher of runtime.stop_with_parent)."""
    import subprocess
    import sys

    script = (
        "from course_utils.chat import llm; from course_utils.foundations import models; from course_utils.core import model_registry;"
        "s = llm.LocalServer(models.gguf_path(model_registry.SMOLLM2_GGUF), n_ctx=512).start();"
        "print(s.process.pid, flush=True);"
        "import time; time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_gone(child_pid)


def test_server_threads_setting(monkeypatch):
    monkeypatch.delenv("COURSE_LLM_THREADS", raising=False)
    assert llm.server_threads() >= 1
    monkeypatch.setenv("COURSE_LLM_THREADS", "1")
    assert llm.server_threads() == 1
    monkeypatch.setenv("COURSE_LLM_THREADS", "many")
    with pytest.raises(ValueError, match="COURSE_LLM_THREADS"):
        llm.server_threads()


def test_old_server_logs_are_pruned_newest_kept(tmp_path):
    for age, port in enumerate(range(5)):
        log = tmp_path / f"llama-server-{port}.log"
        log.write_text("old run")
        os.utime(log, (1_000_000 - age, 1_000_000 - age))  # port 0 newest, port 4 oldest
    keep_me = tmp_path / "notes.txt"
    keep_me.write_text("not a server log")
    assert llm.prune_server_logs(tmp_path, keep=2) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama-server-0.log", "llama-server-1.log", "notes.txt"]
    assert llm.prune_server_logs(tmp_path, keep=2) == 0


def test_server_start_prunes_the_cache_logs_only(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    logs = tmp_path / "cache" / "logs"
    logs.mkdir(parents=True)
    for port in range(llm.SERVER_LOGS_KEPT + 5):
        (logs / f"llama-server-{port}.log").write_text("old run")
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(llm.ServerStartError):
        llm.LocalServer(bogus).start(timeout=60)
    assert len(list(logs.glob("llama-server-*.log"))) == llm.SERVER_LOGS_KEPT  # the new log among them
    chosen = tmp_path / "mine"
    chosen.mkdir()
    for port in range(llm.SERVER_LOGS_KEPT + 5):
        (chosen / f"llama-server-{port}.log").write_text("old run")
    with pytest.raises(llm.ServerStartError):
        llm.LocalServer(bogus, log_path=chosen / "llama-server-x.log").start(timeout=60)
    assert len(list(chosen.glob("llama-server-*.log"))) == llm.SERVER_LOGS_KEPT + 6


def test_llama_server_is_installed_on_first_use_on_colab_only(monkeypatch, capsys):
    import importlib.util
    import types

    requirement = llm.llama_server_requirement()
    assert requirement.startswith("llama-cpp-python[server]") and "<0.4" in requirement  # pyproject's cpu pin
    llm.ensure_llama_server(installer=lambda req: pytest.fail("installed though llama_cpp is present"))

    real_find_spec = importlib.util.find_spec
    present = {"llama_cpp": False}

    def find_spec(name, *args):
        if name == "llama_cpp" and not present[name]:
            return None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(llm.ServerStartError, match=r"llama-cpp-python is not installed.*make setup.*OPENAI_API_KEY"):
        llm.ensure_llama_server(installer=lambda req: pytest.fail("never installs outside Colab"))

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    installed = []

    def fake_pip(req):
        installed.append(req)
        present["llama_cpp"] = True

    llm.ensure_llama_server(installer=fake_pip)
    assert installed == [requirement] and "compiles once per Colab runtime" in capsys.readouterr().out
    present["llama_cpp"] = False
    with pytest.raises(llm.ServerStartError, match="still not importable"):
        llm.ensure_llama_server(installer=lambda req: None)

    # Without an installer of its own, pip runs through runtime.pip_install, building without the multimodal library.
    from course_utils.core import runtime

    runs = []

    def fake_pip_install(*args, env=None):
        runs.append((args, env["CMAKE_ARGS"]))
        present["llama_cpp"] = True

    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    monkeypatch.setattr(runtime, "pip_install", fake_pip_install)
    llm.ensure_llama_server()
    assert runs == [((requirement,), "-DLLAVA_BUILD=OFF")]


def test_llama_server_binary_is_chosen_by_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_LLAMA_SERVER", "python")
    assert llm.llama_server_binary() is None
    assert llm.LocalServer("x.gguf").kind == "llama-cpp-python"
    monkeypatch.setenv("COURSE_LLAMA_SERVER", str(tmp_path / "nowhere"))
    with pytest.raises(llm.ServerStartError, match="COURSE_LLAMA_SERVER=.*not an executable"):
        llm.llama_server_binary()
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("COURSE_LLAMA_SERVER", str(fake))
    server = llm.LocalServer("m.gguf", alias="m", chat_template=tmp_path / "t.jinja", slots=2)
    server.port = 1234
    command = server.command()
    assert command[0] == str(fake) and "--jinja" in command
    assert command[command.index("--chat-template-file") + 1] == str(tmp_path / "t.jinja")
    assert command[command.index("--parallel") + 1] == "2" and command[command.index("--ctx-size") + 1] == str(2 * 4096)
    monkeypatch.setenv("COURSE_LLM_SLOTS", "0")
    with pytest.raises(ValueError, match="COURSE_LLM_SLOTS"):
        llm.server_slots()


def test_make_setup_installs_llama_server_here():
    """The course's set-up builds llama-server into the venv; under CI its absence is a failure."""
    binary = llm.llama_server_binary()
    if binary is None and not os.environ.get("CI"):
        pytest.skip("llama-server is not built here (make setup builds it)")
    assert binary and os.access(binary, os.X_OK)


def test_llama_cpp_python_server_still_serves_as_the_fallback():
    need_module("llama_cpp", "llama-cpp-python is not installed")
    server = llm.LocalServer(models.gguf_path(model_registry.SMOLLM2_GGUF), n_ctx=1024, binary=None, alias="smol")
    try:
        server.start()
        from openai import OpenAI

        client = OpenAI(base_url=server.base_url, api_key="local")
        reply = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)
        assert server.kind == "llama-cpp-python" and not server.native_tools
        assert reply.choices[0].message.content.strip()
    finally:
        server.stop()


@pytest.mark.slow
def test_the_frontier_stand_in_returns_native_tool_calls(clean_env):
    """Qwen2.5-Coder-1.5B behind llama-server: the fee question comes back as an OpenAI tool call."""
    import json


    if llm.llama_server_binary() is None:
        missing("needs llama-server (make setup builds it)")
    backend = llm.get_backend("local", model=model_registry.QWEN_1_5B_GGUF)
    assert backend.model == "qwen2.5-coder-1.5b" and backend.native_tools
    response = backend.client.chat.completions.create(
        model=backend.model, temperature=0, max_tokens=80, tools=[marketplace.fee_tool().spec()],
        messages=[conversation.user("I sold a jacket for 40 dollars. How much do I earn after fees?")],
    )  # fmt: skip
    calls = response.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "seller_earnings"
    assert json.loads(calls[0].function.arguments)["price"] == 40
    ask = [conversation.system("You help Relay Market sellers. Use a tool when it helps, then answer in one sentence."),
           conversation.user("I sold a jacket for 40 dollars. How much do I earn after fees?")]
    run = tool_calling.run_tools(backend, ask, [marketplace.fee_tool()], temperature=0)
    assert run.mode == "native" and run.tool_called and run.steps[-1].kind == "answer"
    assert "34.34" in run.answer, run.answer  # seller_earnings(40) from the tool's result
