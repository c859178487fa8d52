#!/usr/bin/env bash
# Build llama.cpp's own OpenAI-compatible server, `llama-server`, from the llama.cpp source that
# the course's llama-cpp-python release vendors, as one static binary.
#   scripts/build_llama_server.sh VERSION OUT [PIP]
# VERSION is the llama-cpp-python version (the same llama.cpp as the Python bindings), OUT the
# binary to write, PIP the pip to download the source with (default: .venv/bin/pip).
# Why: llama-server renders a model's own chat template (--jinja) and returns its tool calls as
# OpenAI `tool_calls`; llama-cpp-python's server returns Qwen's tool calls as text. It also decodes
# several requests at once (--parallel). CMAKE_ARGS passes through (GGML_NATIVE=ON or OFF).
# The binary is written beside OUT and moved into place when whole.
set -euo pipefail
version=${1:?usage: build_llama_server.sh VERSION OUT [PIP]}
out=${2:?usage: build_llama_server.sh VERSION OUT [PIP]}
pip=${3:-.venv/bin/pip}
command -v cmake >/dev/null 2>&1 || { echo "build_llama_server: cmake is missing (Debian: apt install cmake)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$pip" download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)
# Only llama.cpp's own options reach its cmake (llama-cpp-python's LLAVA_BUILD means nothing there).
native=ON
case "${CMAKE_ARGS:-}" in *GGML_NATIVE=OFF*) native=OFF ;; esac
# The same AMX opt-out as setup.sh's llama-cpp-python build (why: see there).
flags=()
case "${CMAKE_ARGS:-}" in *-mno-amx-int8*) flags=(-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8) ;; esac
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=$native "${flags[@]}" \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >"$work/cmake.log" 2>&1 \
  || { tail -30 "$work/cmake.log" >&2; exit 1; }
jobs=$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cp "$work/build/bin/llama-server" "$out.partial"
mv "$out.partial" "$out"
echo "build_llama_server: $out (llama.cpp from llama-cpp-python $version)"
