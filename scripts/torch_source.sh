# Sourced by scripts/setup.sh and scripts/wheelhouse.sh: where the pinned torch comes from.
# torch_index VENV SPEC prints the index to add for SPEC, or nothing. On Linux, PyPI's torch is
# the CUDA build (several GB of NVIDIA libraries); without an NVIDIA GPU, and unless a local
# wheel folder (PIP_FIND_LINKS, COURSE_WHEELS) already holds the pin, take the CPU build from
# PyTorch's own index. COURSE_TORCH_INDEX overrides the choice.
torch_index() {
  if [ -n "${COURSE_TORCH_INDEX:-}" ]; then
    echo "$COURSE_TORCH_INDEX"
  elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
       && ! "$1/bin/pip" install -q --dry-run --no-deps --no-index "$2" >/dev/null 2>&1; then
    echo "https://download.pytorch.org/whl/cpu"
  fi
}
