"""Run a command with no route off this machine: in a network namespace of its own, loopback only.

    python scripts/no_network.py CMD [ARGS...]

The course's network guard (COURSE_BLOCK_NETWORK) covers Python sockets only; a native HTTP client
(llama.cpp, Chromium, a Rust or C++ library) would slip past it. Inside a fresh network namespace
nothing can: the only interface is loopback, which this script brings up so the local servers
(llama-server, Gradio, uvicorn) still answer on 127.0.0.1.

Where the machine does not allow a namespace (no `unshare`, or no permission for it), the command
runs as it is, with the Python guard alone, and the script says so on stderr.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: one ioctl on a datagram socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def namespace_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    for flags in (["-n"], ["-rn"]):  # as root; or as a user, mapped to root in a user namespace
        if subprocess.run([unshare, *flags, "true"], capture_output=True).returncode == 0:
            os.environ["COURSE_UNSHARE_FLAGS"] = " ".join(flags)
            return True
    return False


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("COURSE_IN_NETNS") == "1":  # the second stage: inside the namespace
        loopback_up()
        os.execvp(argv[0], argv)
    if not namespace_available():
        print("no_network: this machine allows no network namespace (unshare); running with the Python network guard only", file=sys.stderr)
        os.execvp(argv[0], argv)
    print("no_network: running in a network namespace of its own (loopback only)", file=sys.stderr)
    env = {**os.environ, "COURSE_IN_NETNS": "1"}
    flags = os.environ["COURSE_UNSHARE_FLAGS"].split()
    return subprocess.run([shutil.which("unshare"), *flags, sys.executable, os.path.abspath(__file__), *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
