"""Fine-tuning data, its validator and cost, the TRL data set and the adapter plumbing."""

import hashlib
import json
from pathlib import Path

import pytest

from course_utils.core import config
from course_utils.pricing import finetune, openai_jobs, qlora, training
from course_utils.pricing.items import Item


def make_items(n=3):
    return [
        Item(id=f"i{k}", title=f"Widget {k}", description="A fine widget", categories=("Home", "Kitchen"), price=10.4 + 7 * k)
        for k in range(n)
    ]


def test_chat_messages_have_roles_in_order_and_the_rounded_price():
    messages = finetune.chat_messages(make_items(1)[0])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert "Widget 0" in messages[1]["content"]
    assert messages[2]["content"] == "Price is $10.00"
    assert finetune.chat_messages(make_items(1)[0], with_answer=False)[-1]["role"] == "user"


def test_jsonl_round_trip_and_no_temp_files_left(tmp_path):
    train, val = finetune.write_finetune_files(make_items(3), make_items(2), tmp_path)
    rows = finetune.read_jsonl(train)
    assert len(rows) == 3 and rows[1]["messages"][2]["content"] == "Price is $17.00"
    assert len(finetune.read_jsonl(val)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl", "validation.jsonl"]


def test_writing_no_items_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no items"):
        finetune.write_jsonl([], tmp_path / "x.jsonl")


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        finetune.read_jsonl(path)


@pytest.mark.parametrize(
    "example, problem",
    [
        ({}, "no 'messages'"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}, "unknown role"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "empty content"),
        ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}, "alternate"),
        ({"messages": [{"role": "user", "content": "a"}]}, "last message"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]}, "system message may only come first"),
        ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}, "not text"),
    ],
)
def test_validator_finds_each_kind_of_problem(example, problem):
    assert any(problem in e for e in finetune.example_errors(example))


def test_a_good_example_has_no_errors():
    assert finetune.example_errors({"messages": finetune.chat_messages(make_items(1)[0])}) == []


def test_token_counts_use_o200k_plus_message_overhead():
    encoding = finetune.o200k_encoding()
    messages = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "Price is $12.00"}]
    content = len(encoding.encode("hello world")) + len(encoding.encode("Price is $12.00"))
    assert finetune.count_chat_tokens(messages, encoding) == content + 3 * 2 + 3
    assert encoding.encode("hello world") == [24912, 2375]  # the o200k ids tiktoken gives


def test_validate_jsonl_reports_errors_by_line_and_counts_tokens(tmp_path):
    path = finetune.write_jsonl(make_items(2), tmp_path / "t.jsonl")
    with open(path, "a") as handle:
        handle.write(json.dumps({"messages": [{"role": "user", "content": ""}]}) + "\n")
    report = finetune.validate_jsonl(path)
    assert report.examples == 3 and not report.ok
    assert list(report.errors) == [3]
    assert report.tokens[0] > 20 and report.tokens[2] == 0
    assert report.summary()["examples with errors"] == 1


def test_notebook_09s_cost_table_bills_every_epoch():
    from types import SimpleNamespace

    import pandas as pd
    from notebook_cells import cell_namespace

    ns = cell_namespace("09_frontier_pricing_and_finetuning.ipynb", "price_per_million = ", finetune=finetune, openai_jobs=openai_jobs, pd=pd,
                        reports=[SimpleNamespace(total_tokens=1_000_000)])
    costs = ns["costs"].set_index("epochs")
    assert costs.loc[1, "usd"] == pytest.approx(openai_jobs.TRAINING_PRICE_PER_M[openai_jobs.DEFAULT_OPENAI_BASE])
    assert costs.loc[3, "usd"] == pytest.approx(3 * costs.loc[1, "usd"]) and costs.loc[3, "billed tokens"] == 3_000_000


def test_prompt_completion_split_keeps_the_answer_as_completion(tmp_path):
    path = finetune.write_jsonl(make_items(2), tmp_path / "t.jsonl")
    dataset = training.conversational_dataset(path)
    row = dataset[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"] == [{"role": "assistant", "content": "Price is $10.00"}]


def test_conversational_dataset_refuses_invalid_files(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        training.conversational_dataset(path)


def test_sft_config_settings(tmp_path):
    profile = config.get_profile("ci")
    args = training.sft_config(tmp_path, profile, quantized=True)
    assert args.max_steps == profile.size("qlora_max_steps")
    assert args.save_steps == profile.size("qlora_save_steps") and args.completion_only_loss is True
    assert args.learning_rate == training.QLORA_LEARNING_RATE
    assert args.max_length > profile.size("max_tokens_prompt")
    assert training.sft_config(tmp_path, profile, max_steps=3).save_strategy == "no"


def test_lora_config_from_the_profile():
    profile = config.get_profile("ci")
    lora = qlora.lora_config(profile)
    assert lora.r == profile.size("lora_r") and lora.lora_alpha == profile.size("lora_alpha")
    assert set(lora.target_modules) == set(qlora.LORA_TARGETS)


def test_interruption_step_is_on_a_checkpoint_halfway():
    for name in ("ci", "offline", "gpu"):
        profile = config.get_profile(name)
        step = qlora.interruption_step(profile)
        assert step % profile.size("qlora_save_steps") == 0
        assert 0 < step < profile.size("qlora_max_steps")


class _Saver:
    """Something with save_pretrained, like a PeftModel: writes one file, or fails."""

    def __init__(self, text, fail=False):
        self.text, self.fail = text, fail

    def save_pretrained(self, folder):
        Path(folder, "adapter_model.safetensors").write_text(self.text)
        if self.fail:
            raise RuntimeError("disk full")


def test_save_adapter_replaces_atomically_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "adapters" / "a"
    qlora.save_adapter(_Saver("v1"), target)
    qlora.save_adapter(_Saver("v2"), target)
    assert (target / "adapter_model.safetensors").read_text() == "v2"
    with pytest.raises(RuntimeError):
        qlora.save_adapter(_Saver("v3", fail=True), target)
    assert (target / "adapter_model.safetensors").read_text() == "v2"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a"]


def test_load_finetuned_without_adapter_says_which_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 10"):
        qlora.load_finetuned(config.get_profile("ci"), adapter=tmp_path / "missing")


def test_no_openai_key_means_no_client(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr("course_utils.core.secrets.get_secret", lambda name, required=False: None)
    assert openai_jobs.openai_client() is None


def test_smollm2_template_needs_prompt_completion_data():
    from course_utils.foundations import models

    tokenizer = models.load_tokenizer("base_model", config.get_profile("ci"))
    assert training.assistant_mask_support(tokenizer).startswith("no")


@pytest.mark.slow
def test_qlora_stops_resumes_and_saves(tmp_path, monkeypatch):
    """Two real QLoRA steps on the 4-bit model: stop after one, resume, save, reload."""
    import torch

    from course_utils.foundations import models

    profile = config.get_profile("ci")
    path = finetune.write_jsonl(make_items(4), tmp_path / "t.jsonl")
    dataset = training.conversational_dataset(path)
    tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
    args = training.sft_config(tmp_path / "ckpt", profile, quantized=True, max_steps=2, save_steps=1, per_device_train_batch_size=2)
    first = training.train(qlora.load_qlora_model(profile), tokenizer, dataset, args, stop_after=1)
    assert first.steps == 1 and training.last_checkpoint(tmp_path / "ckpt").endswith("checkpoint-1")
    first.release()  # as after a crash: the stopped run's model and optimizer are gone
    assert first.trainer is None and first.table()["steps"] == 1
    half = tmp_path / "ckpt" / "checkpoint-7"  # a save cut off by the crash: weights begun, no state file
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"half")
    assert training.last_checkpoint(tmp_path / "ckpt", show=lambda _: None).endswith("checkpoint-1")
    model = qlora.load_qlora_model(profile)
    second = training.train(model, tokenizer, dataset, args, resume=True)
    assert second.trainer.state.global_step == 2 and second.steps == 1 and second.tokens > 0
    # fp32 training on a CPU: the adapters stay fp32, although TRL casts a 4-bit model's to bf16
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    adapter = qlora.save_adapter(model, tmp_path / "adapter")
    assert (adapter / "adapter_config.json").is_file()
    reloaded = qlora.load_qlora_model(profile, adapter=adapter, trainable=False)
    assert not any(p.requires_grad for p in reloaded.parameters())


def test_training_precision_on_a_t4_is_fp16(monkeypatch):
    import torch

    from course_utils.foundations import models
    from course_utils.pricing import training

    monkeypatch.setattr(models, "pick_device", lambda: "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated bf16 counts here
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert training._device_flags() == {"bf16": False, "fp16": True}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 6))
    assert training._device_flags() == {"bf16": True, "fp16": False}


def test_trainable_weights_are_cast_to_fp32_and_frozen_ones_kept():
    """TRL casts a 4-bit model's adapters to bf16; a T4's fp16 gradient scaler refuses those."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].to(torch.bfloat16).requires_grad_(False)  # frozen: left as it is
    model[1].to(torch.bfloat16)
    model[2].to(torch.float16)
    assert training.trainable_to_fp32(model) == 4  # weight and bias of the two trainable layers
    assert {p.dtype for p in model[0].parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model[1:].parameters()} == {torch.float32}
    assert training.trainable_to_fp32(model) == 0  # nothing left to cast


def test_an_adapter_for_another_hub_base_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    profile = config.get_profile("gpu")  # base model Qwen/Qwen2.5-7B: reading a profile unlocks nothing
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}))
    with pytest.raises(ValueError, match="trained on meta-llama/Llama-3.1-8B, but this profile's base model is Qwen/Qwen2.5-7B"):
        qlora.check_adapter_base(adapter, profile)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-7B"}))
    qlora.check_adapter_base(adapter, profile)  # the same base: fine
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "elsewhere")}))
    qlora.check_adapter_base(adapter, profile)  # a local path (offline models): not compared


def test_base_model_loads_at_the_fine_tuned_models_precision(monkeypatch):
    from course_utils.foundations import models

    calls = []
    monkeypatch.setattr(models, "load_causal_lm", lambda role, profile, quantization=None: calls.append((role, quantization)))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    qlora.load_base(config.get_profile("ci"))
    qlora.load_base(config.get_profile("gpu"))
    assert calls == [("base_model", None), ("base_model", "4bit")]  # offline merges into fp32; GPU profiles stay 4-bit


def test_notebooks_08_and_09_fine_tune_on_the_same_profile_sized_files(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile("ci")
    splits = SimpleNamespace(
        train=[Item(id=f"t{i}", title=f"Train {i}", price=10 + i) for i in range(200)],
        val=[Item(id=f"v{i}", title=f"Val {i}", price=5 + i) for i in range(50)],
    )
    train, val = finetune.course_finetune_items(splits, profile)
    assert len(train) == profile.size("sft_train_items") and len(val) == max(8, len(train) // 10)
    train_path, val_path = finetune.write_course_files(splits, profile)
    assert train_path.parent == profile.work_dir / "finetune"
    assert [json.loads(line)["messages"][1] for line in train_path.read_text().splitlines()] == [
        finetune.chat_messages(it)[1] for it in train
    ]
    assert len(val_path.read_text().splitlines()) == len(val)


def test_an_interrupted_run_sums_up_like_one_run_without_its_warm_up_steps(tmp_path):
    def part(steps, times, tokens, peak, losses):
        logs = [{"step": s, "loss": loss} for s, loss in losses]
        return training.TrainResult(steps, sum(times), times, tokens, peak, logs, tmp_path)

    first = part(3, [5.0, 1.0, 1.0], 300, 900.0, [(1, 2.0), (3, 1.5)])
    second = part(2, [4.0, 2.0], 200, 1200.0, [(5, 1.2)])
    whole = training.run_table(first, second)
    assert whole["steps"] == 5 and whole["wall time (s)"] == 13.0 and whole["tokens trained"] == 500
    assert whole["seconds per step"] == round((1 + 1 + 2) / 3, 2)  # each part's first step left out
    assert whole["tokens per second"] == round(500 / 13, 1) and whole["peak memory (MB)"] == 1200 and whole["final loss"] == 1.2
    assert first.table() == training.run_table(first) and first.table()["seconds per step"] == 1.0
    with pytest.raises(ValueError, match="no training runs"):
        training.run_table()


def test_last_checkpoint_skips_one_written_half_way(tmp_path):
    said = []
    assert training.last_checkpoint(tmp_path / "nothing") is None
    for step, files in ((5, ("trainer_state.json", "adapter_model.safetensors")), (10, ("trainer_state.json", "model.safetensors")), (15, ("adapter_model.safetensors",)), (20, ())):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("x")
    (tmp_path / "checkpoint-final").mkdir()  # not numbered: never a candidate
    assert training.last_checkpoint(tmp_path, show=said.append) == str(tmp_path / "checkpoint-10")
    assert [line.split(":")[0] for line in said] == ["skipping checkpoint-20", "skipping checkpoint-15"]
    assert not training.checkpoint_complete(tmp_path / "checkpoint-15")


def test_start_fresh_moves_an_earlier_run_aside(tmp_path):
    said = []
    out = tmp_path / "qlora-pricer"
    assert training.start_fresh(out, show=said.append) == out and out.is_dir() and not said
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    training.start_fresh(out, show=said.append)
    previous = tmp_path / "qlora-pricer-previous"
    assert list(out.iterdir()) == [] and (previous / "checkpoint-3" / "trainer_state.json").is_file()
    assert "moved to" in said[0] and "qlora-pricer-previous" in said[0]
    (out / "stray.log").write_text("x")  # no checkpoints: emptied, the previous run stays put
    training.start_fresh(out, show=said.append)
    assert list(out.iterdir()) == [] and (previous / "checkpoint-3").is_dir() and len(said) == 1


def test_openai_client_is_none_when_the_local_server_is_asked_for(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + "x" * 40)
    monkeypatch.setenv("COURSE_ALLOW_PAID", "1")
    monkeypatch.delenv("COURSE_BLOCK_NETWORK", raising=False)
    monkeypatch.setenv("COURSE_LLM", "local")
    assert openai_jobs.openai_client() is None
    monkeypatch.delenv("COURSE_LLM")
    monkeypatch.setenv("COURSE_BLOCK_NETWORK", "1")  # make test: a key in .env must not start a paid job
    assert openai_jobs.openai_client() is None
    monkeypatch.setenv("COURSE_BLOCK_NETWORK", "0")
    assert openai_jobs.openai_client() is not None


def test_a_key_alone_does_not_allow_a_paid_job(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + "x" * 40)
    for name in ("COURSE_LLM", "COURSE_BLOCK_NETWORK", "COURSE_ALLOW_PAID"):
        monkeypatch.delenv(name, raising=False)
    assert not openai_jobs.paid_jobs_allowed() and openai_jobs.openai_client() is None
    for said_no in ("0", "no", ""):
        monkeypatch.setenv("COURSE_ALLOW_PAID", said_no)
        assert openai_jobs.openai_client() is None
    monkeypatch.setenv("COURSE_ALLOW_PAID", "yes")
    assert openai_jobs.paid_jobs_allowed() and openai_jobs.openai_client() is not None


def test_push_adapter_is_opt_in(monkeypatch):
    pushed = []

    class Model:
        def push_to_hub(self, repo_id, token, private):
            pushed.append((repo_id, private))

    online = config.get_profile("colab")  # before a token is set: no Hub check for gated models
    monkeypatch.setattr("course_utils.core.secrets.get_secret", lambda name, required=False: "hf_" + "x" * 30)
    monkeypatch.delenv(qlora.HUB_REPO_ENV, raising=False)
    monkeypatch.setattr(config, "get_profile", lambda name=None: online)
    assert qlora.push_adapter(Model()) is None and not pushed  # no repo named: nothing published
    with pytest.raises(ValueError, match="your-name/qlora-pricer"):
        qlora.push_adapter(Model(), "just-a-name")
    monkeypatch.setenv(qlora.HUB_REPO_ENV, "me/qlora-pricer")
    assert qlora.push_adapter(Model()) == "https://huggingface.co/me/qlora-pricer"
    assert pushed == [("me/qlora-pricer", True)]


class FineTuningAPI:
    """A scripted stand-in for OpenAI's files and fine-tuning endpoints, driven by the real openai client."""

    def __init__(self):
        from scripted_http import JSONHandler, LocalServer

        self.created = []
        self.jobs = {}
        outer = self

        class Handler(JSONHandler):
            def _job(self, job_id):
                job = outer.jobs[job_id]
                return {"id": job_id, "object": "fine_tuning.job", "created_at": 0, "model": job["model"], "status": job["status"],
                        "training_file": job["training_file"], "validation_file": None, "fine_tuned_model": None, "organization_id": "org",
                        "result_files": [], "seed": 42, "hyperparameters": {"n_epochs": 1}, "error": None, "finished_at": None,
                        "trained_tokens": None}  # fmt: skip

            def do_POST(self):
                body = self.read_body()
                if self.path.endswith("/files"):
                    n = len(outer.created)
                    outer.created.append("file")
                    return self.send_json({"id": f"file-{n}", "object": "file", "bytes": len(body), "created_at": 0, "filename": "x.jsonl",
                                           "purpose": "fine-tune", "status": "processed"})  # fmt: skip
                request = json.loads(body)
                job_id = f"ftjob-{len(outer.jobs)}"
                outer.jobs[job_id] = {"model": request["model"], "status": "queued", "training_file": request["training_file"]}
                outer.created.append(job_id)
                return self.send_json(self._job(job_id))

            def do_GET(self):
                return self.send_json(self._job(self.path.rstrip("/").split("/")[-1]))

        self.server = LocalServer(Handler)

    def client(self):
        import openai

        return openai.OpenAI(base_url=self.server.url, api_key="x", max_retries=0)

    def close(self):
        self.server.close()


def test_a_rerun_follows_the_recorded_openai_job_instead_of_paying_for_another(tmp_path, monkeypatch):
    """Notebook 09's job cell, executed against a scripted fine-tuning API with the real openai client."""
    from types import SimpleNamespace

    from notebook_cells import cell_namespace

    api = FineTuningAPI()
    try:
        said = []
        monkeypatch.setattr(openai_jobs, "openai_client", api.client)
        monkeypatch.setattr(openai_jobs, "poll_openai_job", lambda client, job_id: client.fine_tuning.jobs.retrieve(job_id))
        train = finetune.write_jsonl(make_items(3), tmp_path / "train.jsonl")
        val = finetune.write_jsonl(make_items(2), tmp_path / "val.jsonl")
        profile = SimpleNamespace(work_dir=tmp_path / "results", seed=42)
        record = profile.work_dir / "openai_finetune_job.json"

        def run_cell():
            return cell_namespace("09_frontier_pricing_and_finetuning.ipynb", "client.fine_tuning.jobs.create(", finetune=finetune, openai_jobs=openai_jobs,
                                  train_path=train, val_path=val, profile=profile, scores={}, print=lambda *a: said.append(" ".join(map(str, a))))

        first = run_cell()
        assert first["job"].id == "ftjob-0" and api.created == ["file", "file", "ftjob-0"]
        made_from = first["made_from"]
        assert json.loads(record.read_text()) == {"job_id": "ftjob-0", "made_from": made_from}
        assert made_from["train_sha256"] == hashlib.sha256(train.read_bytes()).hexdigest() and made_from["epochs"] == 1
        assert openai_jobs.recorded_job(api.client(), record, made_from, show=said.append).id == "ftjob-0" and "following it" in said[-1]
        assert run_cell()["job"].id == "ftjob-0" and len(api.created) == 3  # the notebook run again: no second job
        api.jobs["ftjob-0"]["status"] = "failed"  # a failed job is not reused
        assert openai_jobs.recorded_job(api.client(), record, made_from, show=said.append) is None and "ended failed" in said[-1]
        assert run_cell()["job"].id == "ftjob-1"
        finetune.write_jsonl(make_items(4), train)  # other training data: another job
        assert run_cell()["job"].id == "ftjob-2"
        record.write_text("{not json")
        assert openai_jobs.recorded_job(api.client(), record, made_from, show=said.append) is None
    finally:
        api.close()
