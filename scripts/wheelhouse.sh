#!/usr/bin/env bash
# A folder of wheels from which scripts/setup.sh installs the course with no network: build it once
# before a workshop, copy it to the seats (a USB stick, a share), and on each seat run
#   COURSE_WHEELS=/path/to/wheelhouse make course
# Wheels are for one OS, processor kind and Python minor version (those of this machine, printed at
# the end): build one folder per kind of seat. llama.cpp is built for any x86-64 processor with AVX2
# (GGML_NATIVE=OFF), not for this machine's alone, so every seat can run it.
#   scripts/wheelhouse.sh [FOLDER]          the course (make course, make lab, make doctor)
#   WITH_DEV=1 scripts/wheelhouse.sh ...    plus the test tools (make unit, make test)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pip_sources.sh

out=${1:-build/wheelhouse}
extras=cpu
[ -n "${WITH_DEV:-}" ] && extras=cpu,dev
venv=.venv
bash scripts/setup.sh  # a venv whose pip and Python resolve the pins
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! ls "$out"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  llama_req=$(requirements llama "$extras")
  echo "wheelhouse: building $llama_req for any AVX2 processor (~4 min on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" "$venv/bin/pip" wheel -q --no-deps --no-cache-dir -w "$out" "$llama_req"
fi
llama_wheel=$(ls "$out"/llama_cpp_python-*.whl | head -1)
llama_version=$(basename "$llama_wheel" | cut -d- -f2)
# llama.cpp's own server (native tool calls), for any AVX2 processor too; setup.sh copies it from here.
server="$out/llama-server-$llama_version-$(uname -s)-$(uname -m)"
if [ ! -x "$server" ]; then
  echo "wheelhouse: building llama-server $llama_version for any AVX2 processor (~5 min on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" bash scripts/build_llama_server.sh "$llama_version" "$server" "$venv/bin/pip"
fi

read_requirements others others "$extras"
index=$(torch_index "$(printf '%s\n' "${others[@]}" | grep '^torch==')")
echo "wheelhouse: collecting every other wheel into $out"
# llama-cpp-python pinned to the wheel just built, so pip resolves its server extras around it and
# never swaps in a newer source release; pip, setuptools and wheel let setup.sh upgrade pip and build
# the course's own package without an index.
"$venv/bin/pip" wheel -q --find-links "$out" -w "$out" ${index:+--extra-index-url "$index"} \
  pip "setuptools>=68" wheel "llama-cpp-python[server]==$llama_version" "${others[@]}"
read_requirements nodeps no-deps
"$venv/bin/pip" wheel -q --no-deps -w "$out" "${nodeps[@]}"
rm -f "$out"/course_utils-*.whl  # the course itself installs from the checkout
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1), for" \
     "$(uname -s) $(uname -m), Python $("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "wheelhouse: on each seat: COURSE_WHEELS=$out make course"
