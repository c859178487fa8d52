"""The pricer service as a real uvicorn process on 127.0.0.1 (notebook 15), started and stopped from Python.

    handle = process.start(profile, pricers=("baseline",))   # ready when it returns
    httpx.post(f"{handle.url}/price", json={"title": "Nike running shoes"}).json()
    handle.stop()

The process builds its app with `app_from_env` (uvicorn's `--factory`): the pricers named in
$COURSE_SERVICE_PRICERS, behind `app.create_app`. A missing artefact ends the process, and its error,
naming the notebook to run, is raised by `start`.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core import config
from ..core.runtime import stop_with_parent
from .served import PRICERS

PRICERS_ENV = "COURSE_SERVICE_PRICERS"  # how `start` tells the uvicorn process what to load
BATCH_ENV = "COURSE_SERVICE_BATCH"


def app_from_env():
    """The app uvicorn builds (`--factory course_utils.serving.process:app_from_env`): pricers from $COURSE_SERVICE_PRICERS."""
    from ..core.start import start as course_start
    from .app import create_app
    from .pricers import load_pricers, stop_model_servers

    profile = course_start(quiet=True)  # the profile, seeds, the network guard: what the first cell does
    keys = [k.strip() for k in os.environ.get(PRICERS_ENV, "baseline").split(",") if k.strip()]
    batch = os.environ.get(BATCH_ENV, "0").lower() in {"1", "true", "yes"}
    return create_app(load_pricers(keys, profile), profile, batch=batch, on_shutdown=[stop_model_servers])


class ServiceStartError(RuntimeError):
    """The service process exited or did not answer /health in time; the message holds its log tail."""


@dataclass
class ServiceHandle:
    """A running service: `url`, `health()`, `stop()`; stopped at interpreter exit too."""

    url: str
    process: subprocess.Popen
    log_path: Path
    pricers: tuple[str, ...]

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path.exists() else "(no log)"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the service: uvicorn shuts down gracefully and its lifespan stops the model servers; any child
        still alive afterwards (the service was killed, say) is ended here, so no llama.cpp server is left behind."""
        import psutil

        if self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for child in children:
            try:
                child.terminate()
                child.wait(timeout=10)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.Error:
                pass  # already gone

    def __enter__(self) -> "ServiceHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    profile: config.Profile | None = None,
    pricers: Sequence[str] | str = ("baseline",),
    port: int | None = None,
    batch: bool = True,
    timeout: float = 300.0,
    env: dict | None = None,
) -> ServiceHandle:
    """Start the service as a uvicorn process on 127.0.0.1 (a free port unless `port`), ready when it returns.

    `pricers` names what it loads ("baseline", "specialist", "rag", "ensemble"); the first answers
    `POST /price`. `batch=True` gathers concurrent requests to a vectorised pricer (the baseline stack) into one
    model call; the LLM pricers are called one request at a time either way. Loading can take a
    while (the ensemble loads every pricer); a missing artefact ends the process, and its error,
    naming the notebook to run, is raised here.
    """
    import httpx

    from ..chat.llm import free_port

    profile = profile or config.get_profile()
    keys = (pricers,) if isinstance(pricers, str) else tuple(pricers)
    unknown = [k for k in keys if k not in PRICERS]
    if unknown or not keys:
        raise ValueError(f"unknown pricers {unknown or keys}; choose from {', '.join(PRICERS)}")
    port = port or free_port()
    log_path = config.cache_dir() / "logs" / f"pricer-service-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, config.PROFILE_ENV: profile.name, PRICERS_ENV: ",".join(keys), BATCH_ENV: "1" if batch else "0",
                 **(env or {})}  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "course_utils.serving.process:app_from_env", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)
    # a killed kernel takes the service with it: SIGTERM, so its lifespan still stops the model servers
    stop_with_parent(process.pid)
    handle = ServiceHandle(f"http://127.0.0.1:{port}", process, log_path, keys)
    atexit.register(handle.stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(_start_failure(handle))
        try:
            if httpx.get(f"{handle.url}/health", timeout=1).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    handle.stop()
    raise ServiceStartError(f"the service did not answer /health within {timeout:.0f} s; log tail ({log_path}):\n{handle.log_tail()}")


def _start_failure(handle: ServiceHandle) -> str:
    """The child's own error line first (a MissingArtifactError names the notebook to run), then the log tail."""
    tail = handle.log_tail(40)
    lines = [ln for ln in tail.splitlines() if "Error:" in ln]
    head = lines[-1].strip() if lines else f"the service process exited with code {handle.process.returncode}"
    return f"{head}\nlog tail ({handle.log_path}):\n{tail}"
