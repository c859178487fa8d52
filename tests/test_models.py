import time

import pytest
import torch

from course_utils.core import config, model_registry
from course_utils.foundations import models


@pytest.mark.parametrize(
    "device, bf16, expected",
    [("cpu", None, torch.float32), ("cuda", True, torch.bfloat16), ("cuda", False, torch.float16), ("mps", None, torch.float16)],
)
def test_dtype_policy(device, bf16, expected):
    assert models.pick_dtype(device, bf16_supported=bf16) is expected


def test_cpu_machine_picks_cpu():
    if torch.cuda.is_available():
        pytest.skip("this check describes the CPU machines of CI")
    assert models.pick_device() == "cpu"
    assert models.describe_device().startswith("cpu, float32")


def test_missing_package_names_the_pip_command():
    source = model_registry.ModelSource(package="no_such_model_pkg", file="x.gguf", pip="pip install no-such-model-pkg==1.0")
    with pytest.raises(models.MissingModelPackageError, match=r"pip install no-such-model-pkg==1\.0"):
        models.gguf_path(source)


def test_registry_packages_are_installed():
    assert models.gguf_path(model_registry.SMOLLM2_GGUF).stat().st_size > 50_000_000
    assert models.package_dir(model_registry.MINILM).is_dir()
    assert (models.package_dir(model_registry.MERCARI) / model_registry.MERCARI.file).is_file()
    for name, source in model_registry.OFFLINE_TOKENIZERS.items():
        assert models.package_dir(source).is_dir(), name


def test_quantization_configs():
    nf4 = models.quantization_config("4bit")
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert not models.quantization_config("4bit-nodq").bnb_4bit_use_double_quant
    assert models.quantization_config("8bit").load_in_8bit
    assert models.quantization_config(None) is None
    with pytest.raises(ValueError, match="unknown quantization"):
        models.quantization_config("3bit")


def test_gguf_is_converted_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    first = models.converted_gguf_dir(model_registry.SMOLLM2_GGUF)
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp folder left behind
    started = time.perf_counter()
    assert models.converted_gguf_dir(model_registry.SMOLLM2_GGUF) == first
    assert time.perf_counter() - started < 1.0


def test_chat_model_loads_and_generates():
    tokenizer = models.load_tokenizer(profile=config.get_profile("ci"))
    model = models.load_causal_lm(profile=config.get_profile("ci"))
    assert model.dtype == torch.float32
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>assistant" in prompt
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_quantized_models_are_smaller():
    # The course pins a bitsandbytes that runs on a CPU (notebooks 03 and 10 need it): no skip.
    status = models.bitsandbytes_status()
    assert status.startswith("ok"), f"bitsandbytes cannot run here: {status}"
    profile = config.get_profile("ci")
    full = models.load_causal_lm(profile=profile).get_memory_footprint()
    eight = models.load_causal_lm(profile=profile, quantization="8bit").get_memory_footprint()
    four = models.load_causal_lm(profile=profile, quantization="4bit").get_memory_footprint()
    assert four < eight < 0.75 * full
    assert four < 0.6 * full


def test_embedding_model_dimension():
    model = models.load_embedding_model(config.get_profile("ci"))
    vectors = model.encode(["a red dress", "a blue dress"])
    assert vectors.shape == (2, 384)


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_a_t4_gets_fp16_even_though_torch_reports_emulated_bf16(monkeypatch, capability, native):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch says on a T4
    assert models.cuda_has_native_bf16() is native
    assert models.pick_dtype("cuda") is (torch.bfloat16 if native else torch.float16)


def test_embedding_dimension_works_with_old_and_new_sentence_transformers():
    class New:
        def get_embedding_dimension(self):
            return 384

    class Old:  # sentence-transformers 5.x
        def get_sentence_embedding_dimension(self):
            return 768

    class Neither:
        def encode(self, texts):
            return [[0.0] * 16 for _ in texts]

    assert [models.embedding_dimension(m) for m in (New(), Old(), Neither())] == [384, 768, 16]
