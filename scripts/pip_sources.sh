# Sourced by scripts/setup.sh and scripts/wheelhouse.sh, which both set $venv first.

# requirements LIST [EXTRAS]: one pip requirement a line, from pyproject.toml through the script
# that also writes environment.yml (lists: llama, others, no-deps).
requirements() { "$venv/bin/python" scripts/sync_environment.py --print "$@"; }

# read_requirements NAME LIST [EXTRAS]: the same lines into the array NAME, without mapfile
# (macOS ships bash 3.2).
read_requirements() {
  local name=$1
  shift
  IFS=$'\n' read -r -d '' -a "$name" < <(requirements "$@"; printf '\0')
}

# torch_index SPEC: the index to add for the pinned torch, or nothing. On Linux, PyPI's torch is
# the CUDA build (several GB of NVIDIA libraries); without an NVIDIA GPU, and unless a local
# wheel folder (PIP_FIND_LINKS, COURSE_WHEELS) already holds the pin, take the CPU build from
# PyTorch's own index. COURSE_TORCH_INDEX overrides the choice.
torch_index() {
  if [ -n "${COURSE_TORCH_INDEX:-}" ]; then
    echo "$COURSE_TORCH_INDEX"
  elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
       && ! "$venv/bin/pip" install -q --dry-run --no-deps --no-index "$1" >/dev/null 2>&1; then
    echo "https://download.pytorch.org/whl/cpu"
  fi
}
