"""One way to get an OpenAI-compatible chat client, whatever is behind it.

`get_backend()` chooses, in this order:
  1. COURSE_LLM=local forces the embedded server (the tests do this);
  2. COURSE_LLM_BASE_URL: any OpenAI-compatible server (Ollama: http://localhost:11434/v1),
     with COURSE_LLM_MODEL and, if it needs one, COURSE_LLM_API_KEY;
  3. OPENAI_API_KEY: OpenAI itself (model COURSE_OPENAI_MODEL, default gpt-4o-mini);
  4. otherwise the embedded server: llama.cpp serving the profile's GGUF on 127.0.0.1.

The embedded server is started once per Python process, health-checked, reused by
every cell and notebook of that kernel, and stopped when the interpreter exits. On
Linux it also dies with its parent, so a killed kernel leaves no orphan behind.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import config, model_registry, secrets

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
LOCAL_MODEL_ALIAS = "local-model"  # a LocalServer's name for its model unless told another


class ServerStartError(RuntimeError):
    """The embedded llama.cpp server did not come up; the message holds its log tail."""


class PortInUseError(OSError):
    """The requested port is taken by another process."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def server_threads() -> int:
    """$COURSE_LLM_THREADS, else every core: lower it on a machine shared with other work."""
    value = os.environ.get("COURSE_LLM_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"COURSE_LLM_THREADS={value!r} must be a positive whole number")
        return int(value)
    return max(1, os.cpu_count() or 1)


SERVER_LOGS_KEPT = 20  # each server start writes one log, named by its port; older ones are deleted


def prune_server_logs(folder: Path, keep: int = SERVER_LOGS_KEPT) -> int:
    """Delete all but the newest `keep` llama-server logs in `folder`; returns how many went.

    Every start picks a free port and so a new log file: without this, a learner's cache
    gains a file per kernel for good.
    """
    dated = []
    for path in folder.glob("llama-server-*.log"):
        try:
            dated.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # another kernel pruned it first
            continue
    removed = 0
    for _, path in sorted(dated, reverse=True)[keep:]:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def llama_server_binary() -> str | None:
    """llama.cpp's own server: $COURSE_LLAMA_SERVER, else `llama-server` in this environment's
    bin folder (scripts/setup.sh builds it there), else on the PATH; None when there is none."""
    import shutil

    chosen = os.environ.get("COURSE_LLAMA_SERVER", "").strip()
    if chosen:
        if chosen.lower() in {"python", "llama-cpp-python"}:
            return None  # asked for llama-cpp-python's server explicitly
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise ServerStartError(f"COURSE_LLAMA_SERVER={chosen!r} is not an executable file; point it at a llama-server binary or unset it")
        return chosen
    beside = Path(sys.prefix) / "bin" / "llama-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("llama-server")


def server_slots() -> int:
    """$COURSE_LLM_SLOTS requests the server decodes together (llama-server only); 1 by default."""
    value = os.environ.get("COURSE_LLM_SLOTS", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"COURSE_LLM_SLOTS={value!r} must be a positive whole number")
    return int(value)


class LocalServer:
    """An OpenAI-compatible llama.cpp server for one GGUF file on loopback.

    Two servers can do it. llama.cpp's own `llama-server` (built by scripts/setup.sh from the
    llama.cpp source that llama-cpp-python vendors) renders the model's own chat template with
    `--jinja` and parses its tool calls into `tool_calls`, as OpenAI does; it can also decode
    several requests at once (`slots`). Where it is missing (Colab, a bare pip install),
    `python -m llama_cpp.server` serves the same file, and tool calls come back as text, which
    `chat.run_tools` handles with a JSON-constrained decision instead.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        port: int | None = None,
        host: str = "127.0.0.1",
        n_ctx: int = 4096,
        alias: str = LOCAL_MODEL_ALIAS,
        log_path: str | os.PathLike | None = None,
        binary: str | None | bool = True,
        slots: int | None = None,
        chat_template: str | os.PathLike | None = None,
    ):
        self.model_path = Path(model_path)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.n_ctx = n_ctx
        self.alias = alias
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        # True: find llama-server (else fall back to llama-cpp-python); None/False: llama-cpp-python; a str: that binary
        self.binary = llama_server_binary() if binary is True else (binary or None)
        self.slots = slots or server_slots()
        self.chat_template = Path(chat_template) if chat_template else None  # llama-server only

    @property
    def kind(self) -> str:
        return "llama-server" if self.binary else "llama-cpp-python"

    @property
    def native_tools(self) -> bool:
        """Whether the server returns the model's tool calls as `tool_calls` (llama-server with --jinja)."""
        return self.binary is not None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def command(self) -> list[str]:
        threads = str(server_threads())
        if self.binary:
            return [
                self.binary,
                "--model", str(self.model_path),
                "--alias", self.alias,
                "--host", self.host,
                "--port", str(self.port),
                # Each slot gets its share of the context: n_ctx is per request, as with llama-cpp-python.
                "--ctx-size", str(self.n_ctx * self.slots),
                "--parallel", str(self.slots),
                "--threads", threads,
                "--threads-batch", threads,
                "--jinja",  # the model's chat template, and its tool calls parsed into tool_calls
                "--no-webui",
                *(["--chat-template-file", str(self.chat_template)] if self.chat_template else []),
            ]  # fmt: skip
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", threads,
            # The server's default (logits_all=True) scores every prompt position against the whole
            # vocabulary; only the last position is ever sampled from, and the course asks for no
            # prompt logprobs. Off, prompts read ~15% faster on 2 cores with identical answers.
            "--logits_all", "false",
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> "LocalServer":
        if self.is_running():
            return self
        if not self.binary:
            ensure_llama_server()
        if not self.model_path.is_file():
            raise ServerStartError(f"model file not found: {self.model_path}")
        if self.requested_port is not None and port_in_use(self.requested_port, self.host):
            raise PortInUseError(f"port {self.requested_port} on {self.host} is already in use; pick another or pass port=None")
        self.port = self.requested_port or free_port(self.host)
        in_cache = self.log_path is None
        if in_cache:
            self.log_path = config.cache_dir() / "logs" / f"llama-server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if in_cache:  # a log path the caller chose is theirs to keep
            prune_server_logs(self.log_path.parent, keep=SERVER_LOGS_KEPT - 1)  # room for this one
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # a session of its own: Ctrl-C in a terminal reaches the kernel, not the server; `stop` (also
                # registered with atexit) ends it. Portable, unlike a preexec_fn calling glibc's prctl.
                start_new_session=True,
            )
        from ..core.runtime import stop_with_parent

        self._watcher = stop_with_parent(self.process.pid)  # a killed kernel takes its server with it
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        import urllib.request

        # llama-server answers /health with 503 until the model is loaded, then 200.
        probe = f"http://{self.host}:{self.port}/health" if self.binary else f"{self.base_url}/models"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"llama.cpp server exited with code {self.process.returncode}; log tail ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(probe, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerStartError(f"llama.cpp server not ready after {timeout:.0f} s; log tail ({self.log_path}):\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        watcher, self._watcher = getattr(self, "_watcher", None), None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if watcher is not None:  # it sees the server gone within half a second and exits
            try:
                watcher.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watcher.kill()


LLAMA_DIST = "llama-cpp-python"


def llama_server_requirement() -> str:
    """The course's llama-cpp-python[server] pin (its `cpu` extra), from the installed package's metadata."""
    req = config.pinned_requirements("cpu").get(LLAMA_DIST)
    if req is None:
        raise ServerStartError(f"the installed course package names no {LLAMA_DIST} pin; reinstall it (make setup)")
    return str(req)


def ensure_llama_server(installer=None) -> None:
    """Make sure `python -m llama_cpp.server` can run: on Colab, install the pin on first use
    (it compiles for several minutes, once per runtime); elsewhere, say how to install it.

    `installer(requirement)` is what runs pip (tests pass their own).
    """
    import functools
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        return
    from ..core.runtime import in_colab, pip_install

    requirement = llama_server_requirement()
    if not in_colab():
        raise ServerStartError(
            f"{LLAMA_DIST} is not installed, so the local chat server cannot start; fix it with: make setup "
            f"(or pip install '{requirement}'), or set OPENAI_API_KEY or COURSE_LLM_BASE_URL to use another server"
        )
    print(
        f"Installing {requirement} for the local chat server: it compiles once per Colab runtime (several minutes). "
        "An OPENAI_API_KEY in Colab's secrets skips this."
    )
    if installer is None:  # without the multimodal library the course never loads, as scripts/setup.sh builds it
        installer = functools.partial(pip_install, env={**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DLLAVA_BUILD=OFF")})
    installer(requirement)
    importlib.invalidate_caches()
    if importlib.util.find_spec("llama_cpp") is None:
        raise ServerStartError(f"{LLAMA_DIST} is still not importable after installing {requirement}")


_SERVERS: dict[Path, LocalServer] = {}
_SERVER_LOCK = threading.Lock()


def local_model(profile: config.Profile | None = None) -> model_registry.ModelSource:
    """The GGUF the embedded server serves for the profile: its frontier stand-in (a Hub-only
    profile without a key falls back to the small offline model)."""
    profile = profile or config.get_profile()
    return profile.frontier_model if profile.frontier_model.offline else model_registry.SMOLLM2_GGUF


def local_server(profile: config.Profile | None = None, model: model_registry.ModelSource | None = None) -> LocalServer:
    """The process-wide embedded server for `model` (default: the profile's frontier stand-in),
    started on first use and reused afterwards; each model gets a server of its own."""
    from ..foundations.models import gguf_path

    source = model or local_model(profile)
    path = gguf_path(source)  # assembles and verifies a split GGUF on first use
    with _SERVER_LOCK:
        server = _SERVERS.get(path)
        if server is None or not server.is_running():
            template = config.data_dir() / "templates" / source.chat_template if source.chat_template else None
            server = LocalServer(path, alias=source.short_name, chat_template=template).start()
            _SERVERS[path] = server
        return server


def stop_local_server() -> None:
    """Stop every embedded server this process started."""
    with _SERVER_LOCK:
        for server in _SERVERS.values():
            server.stop()
        _SERVERS.clear()


@dataclass
class ChatBackend:
    """An `openai.OpenAI` client plus the model name to pass it, and where it points."""

    client: object
    model: str
    kind: str  # "local", "openai" or "base_url"
    base_url: str
    native_tools: bool = True  # False: the server returns tool calls as text (llama-cpp-python's)

    def chat(self, messages: list[dict], **kwargs) -> str:
        """One non-streaming completion; returns the assistant's text."""
        response = self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
        return response.choices[0].message.content or ""

    def describe(self) -> str:
        """Kind, model and server, safe to print: credentials in the URL are masked."""
        from ..core.secrets import mask_url

        return f"{self.kind}: model {self.model} at {mask_url(self.base_url)}"


def choose_backend_kind(env: dict | None = None) -> str:
    """Which back end the environment asks for: 'local', 'base_url' or 'openai'."""
    env = os.environ if env is None else env
    forced = env.get("COURSE_LLM", "").strip().lower()
    if forced in {"local", "openai", "base_url"}:
        return forced
    if forced:
        raise ValueError(f"COURSE_LLM={forced!r} is not one of: local, openai, base_url")
    if env.get("COURSE_LLM_BASE_URL"):
        return "base_url"
    # A key kept in Colab's secrets panel counts too (get_backend reads it from there).
    if env.get("OPENAI_API_KEY") or secrets.colab_secret("OPENAI_API_KEY"):
        return "openai"
    return "local"


def get_backend(
    kind: str | None = None,
    profile: config.Profile | None = None,
    timeout: float = 120.0,
    model: model_registry.ModelSource | None = None,
) -> ChatBackend:
    """A ready-to-use OpenAI-compatible backend (see the module docstring for the order).

    `model` picks another offline GGUF for the embedded server (e.g. `model_registry.QWEN_0_5B_GGUF`).
    """
    from openai import OpenAI

    secrets.load_dotenv_once()
    kind = kind or choose_backend_kind()
    if kind == "openai":
        key = secrets.get_secret("OPENAI_API_KEY", required=True)
        model = os.environ.get("COURSE_OPENAI_MODEL", DEFAULT_OPENAI_MODEL)
        return ChatBackend(OpenAI(api_key=key, timeout=timeout), model, "openai", "https://api.openai.com/v1")
    if kind == "base_url":
        base_url = os.environ.get("COURSE_LLM_BASE_URL")
        if not base_url:
            raise ValueError("COURSE_LLM=base_url needs COURSE_LLM_BASE_URL, e.g. http://localhost:11434/v1 for Ollama")
        model = os.environ.get("COURSE_LLM_MODEL")
        if not model:
            raise ValueError("COURSE_LLM_BASE_URL is set but COURSE_LLM_MODEL is not: name the model the server serves")
        key = secrets.get_secret("COURSE_LLM_API_KEY") or "not-needed"
        return ChatBackend(OpenAI(base_url=base_url, api_key=key, timeout=timeout), model, "base_url", base_url)
    if kind != "local":
        raise ValueError(f"unknown backend {kind!r}; use local, openai or base_url")
    server = local_server(profile, model)
    client = OpenAI(base_url=server.base_url, api_key="local", timeout=timeout, max_retries=0)
    return ChatBackend(client, server.alias, "local", server.base_url, native_tools=server.native_tools)
