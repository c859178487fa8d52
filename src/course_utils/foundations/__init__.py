"""Part 1, foundations: loading models and tokenizers, the offline GGUF files, token counts, pipelines and quantization."""
