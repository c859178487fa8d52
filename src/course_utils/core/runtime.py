"""Where the course runs: Colab or not, and pip into this kernel's own Python.

Two tiny helpers that `start`, `models` and `llm` all need; they live here, below all three, so no
module imports another that imports it back.
"""

from __future__ import annotations

import os
import subprocess
import sys


def in_colab() -> bool:
    return "google.colab" in sys.modules


def pip_install(*args: str, env: dict | None = None) -> None:
    """`pip install -q ARGS` into this kernel's own Python (Colab's first-use installs); raises when pip fails."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True, env=env)


# A few lines of plain Python (no course import, so it starts in milliseconds): wait while both the
# parent and the server live; when the parent is gone (a killed kernel), end the server's process group.
_REAPER = """
import os, signal, sys, time
parent, child = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive(parent) and alive(child) and os.getppid() == parent:
    time.sleep(0.5)
if alive(child):
    try:
        os.killpg(child, signal.SIGTERM)
    except OSError:
        os.kill(child, signal.SIGTERM)
"""


def stop_with_parent(child_pid: int) -> subprocess.Popen:
    """Watch this process and end `child_pid` (a session leader) when this process dies, even by SIGKILL.

    A portable stand-in for Linux's prctl(PR_SET_PDEATHSIG), which needs a preexec_fn calling glibc: a
    tiny watcher process (its parent is this one) that outlives a killed kernel just long enough to
    stop the server the kernel started, so no llama-server keeps two cores busy for nobody.
    """
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(child_pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
