#!/usr/bin/env bash
# llama.cpp's server on a GPU build, with parallel slots: the specialist GGUF notebook 15 exported.
#   deploy/llama_server_gpu.sh results/offline/service/specialist-XXXX-f16.gguf [SLOTS]
# Build llama-server with CUDA first (cmake -DGGML_CUDA=ON, see the llama.cpp server docs).
set -euo pipefail
model=${1:?usage: llama_server_gpu.sh MODEL.gguf [SLOTS]}
slots=${2:-8}
ctx_per_slot=1024

# --parallel: requests decoded together; the context is shared, so give each slot its own share.
# --n-gpu-layers 999: every layer on the GPU. --cont-batching: new requests join the running batch.
exec llama-server \
  --model "$model" --alias qlora-specialist \
  --host 0.0.0.0 --port 8080 \
  --n-gpu-layers 999 \
  --parallel "$slots" --ctx-size $((slots * ctx_per_slot)) \
  --cont-batching \
  --metrics
