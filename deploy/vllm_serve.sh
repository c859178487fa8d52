#!/usr/bin/env bash
# vLLM on one GPU: the base model once, the course's LoRA adapter applied per request (no merge needed).
#   deploy/vllm_serve.sh results/gpu/adapters/qlora-pricer Qwen/Qwen2.5-7B
# Then point any OpenAI client at it:  base_url=http://HOST:8000/v1, model="pricer" (the adapter) or the base id.
# The pricer service uses it for the LLM pricers with COURSE_LLM_BASE_URL=http://HOST:8000/v1 COURSE_LLM_MODEL=pricer.
set -euo pipefail
adapter=${1:?usage: vllm_serve.sh ADAPTER_DIR [BASE_MODEL]}
base=${2:-$(python -c "import json,sys; print(json.load(open(sys.argv[1] + '/adapter_config.json'))['base_model_name_or_path'])" "$adapter")}

# --max-num-seqs: sequences decoded together (continuous batching); raise it until latency is too high.
# --gpu-memory-utilization: the share of GPU memory vLLM takes for weights plus the paged KV cache.
# --max-model-len: the pricing prompts are short; a small context leaves more pages for more sequences.
# --max-lora-rank: at least the adapter's r (the course uses 8-16).
exec vllm serve "$base" \
  --host 0.0.0.0 --port 8000 \
  --dtype auto \
  --max-model-len 2048 \
  --max-num-seqs 64 \
  --gpu-memory-utilization 0.90 \
  --enable-lora --max-lora-rank 16 \
  --lora-modules pricer="$adapter" \
  --served-model-name "$base"
