"""The pricer service of notebook 15: its request rules, the notebook's routes against the package's app, and
a real uvicorn process on loopback answering /health, /price and every kind of bad input."""

import asyncio
import socket

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from course_utils.core import config
from course_utils.serving import service
from course_utils.pricing.items import Item

from needs import need_module
from notebook_cells import cell_namespace

NB15 = "15_pricer_service.ipynb"

GOOD = {"title": "Nike running shoes", "description": "worn twice", "category": "Men > Shoes > Athletic",
        "brand": "Nike", "condition": "Good", "shipping_paid_by_seller": True}  # fmt: skip
# (request body, expected status, field named in the answer, a word its fix must contain)
BAD = {
    "empty title": ({"title": ""}, 422, "title", "non-empty"),
    "whitespace title": ({"title": "   \n"}, 422, "title", "non-empty"),
    "no title": ({"description": "size 10"}, 422, "title", "required"),
    "absurdly long title": ({"title": "x" * (service.MAX_TITLE_CHARS + 1)}, 422, "title", str(service.MAX_TITLE_CHARS)),
    "absurdly long description": ({"title": "a", "description": "y" * 100_000}, 422, "description", str(service.MAX_DESCRIPTION_CHARS)),
    "title is a number": ({"title": 12345}, 422, "title", "string"),
    "title is a list": ({"title": ["Nike"]}, 422, "title", "string"),
    "unknown condition": ({"title": "a", "condition": "Mint"}, 422, "condition", "Like new"),
    "shipping as a string": ({"title": "a", "shipping_paid_by_seller": "yes"}, 422, "shipping_paid_by_seller", "true or false"),
    "unknown field": ({"title": "a", "colour": "red"}, 422, "colour", "shipping_paid_by_seller"),
    "a list, not an object": ([GOOD], 422, "(body)", "JSON object"),
}


def stub_pricer():
    """Prices by title length, so a test can tell which request it answered."""
    return service.ServedPricer("stub", "title-length model", lambda items: [float(len(it.title)) for it in items])


def check_bad(response, status, field, word):
    assert response.status_code == status, response.text
    problems = response.json()["detail"]
    named = [p for p in problems if p["field"] == field]
    assert named, f"no problem names {field!r}: {problems}"
    assert word.lower() in (named[0]["fix"] + " " + named[0]["problem"]).lower(), named[0]


# --- the request rules and helpers ---------------------------------------------------------------
def test_request_to_item_splits_the_category_and_gives_each_request_its_own_id():
    request = service.PriceRequest(**GOOD)
    one, two = service.request_to_item(request), service.request_to_item(request)
    assert one.categories == ("Men", "Shoes", "Athletic") and one.brand == "Nike" and one.shipping_paid_by_seller is True
    assert one.id != two.id  # the baseline features cache by id: two requests must never share one


def test_the_specialist_reads_whole_dollars_with_the_course_price_parser():
    assert service.whole_dollars("129.00\n") == 129.0
    assert service.whole_dollars("129.99") == 129.0  # the in-process specialist stops at the decimal point too
    assert service.whole_dollars("45") == 45.0
    assert service.whole_dollars("0.50") is None and service.whole_dollars("") is None and service.whole_dollars("n/a") is None


class _DigitTokenizer:
    """Just enough of a tokenizer: a chat template, and a vocabulary with the number tokens 0-9."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def get_vocab(self):
        return {**{str(d): d for d in range(10)}, "x": 10, "$": 11}

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)


class _ScriptedCompletions:
    """The llama.cpp server's completions, scripted: the first token's top log-probabilities, then each continuation."""

    def __init__(self, greedy: str, tops: dict[str, float], continuations: dict[str, str]):
        self.greedy, self.tops, self.continuations, self.prompts = greedy, tops, continuations, []

    def create(self, model, prompt, temperature, max_tokens, logprobs=None):
        from types import SimpleNamespace

        self.prompts.append((prompt, max_tokens))
        if logprobs:  # llama-server's chat-style logprobs
            content = [{"top_logprobs": [{"token": t, "logprob": lp} for t, lp in self.tops.items()]}]
            return SimpleNamespace(choices=[SimpleNamespace(text="", logprobs={"content": content})])
        ending = next((c for t, c in self.continuations.items() if prompt.endswith("$" + t)), self.greedy)
        return SimpleNamespace(choices=[SimpleNamespace(text=ending, logprobs=None)])


def test_the_served_specialist_reads_greedy_and_weighted_prices_as_notebook_11():
    import math
    from types import SimpleNamespace

    from course_utils.pricing.specialist import weighted_log_price

    item = Item(id="1", title="Nike running shoes", price=1.0)
    tops = {"1": math.log(0.6), "x": math.log(0.2), "0": math.log(0.1), "2": math.log(0.08)}  # "x" and "0" cannot start a price
    completions = _ScriptedCompletions("129.99", tops, {"1": "29.00", "2": " dollars"})
    server = SimpleNamespace(alias="qlora-specialist")
    client = SimpleNamespace(completions=completions)
    greedy = service.SpecialistServer(server, client, _DigitTokenizer(), fallback=17.0, mode="greedy")
    assert greedy.price(item) == 129.0
    weighted = service.SpecialistServer(server, client, _DigitTokenizer(), fallback=17.0, mode="weighted", top_k=2)
    assert weighted.price(item) == pytest.approx(weighted_log_price([(129.0, 0.6), (2.0, 0.08)]))
    assert completions.prompts[-1][1] == weighted.max_digits - 1  # a continuation writes the digits after the first
    lost = service.SpecialistServer(server, SimpleNamespace(completions=_ScriptedCompletions("about", {}, {})), _DigitTokenizer(), fallback=17.0)
    assert lost.price(item) == 17.0 and lost.no_number == 1  # no number: the training median, counted


def test_request_payloads_are_accepted_by_the_request_model():
    items = [Item(id="1", title="T" * 500, description="d", categories=("A", "B"), condition="Mint", price=3),
             Item(id="2", title="Lamp", price=9, brand="IKEA", shipping_paid_by_seller=False)]  # fmt: skip
    payloads = service.request_payloads(items)
    parsed = [service.PriceRequest(**p) for p in payloads]  # raises if a payload breaks a rule
    assert len(parsed[0].title) == service.MAX_TITLE_CHARS and parsed[0].condition is None and parsed[0].category == "A > B"
    assert "price" not in payloads[1] and "id" not in payloads[1] and payloads[1]["shipping_paid_by_seller"] is False


# --- the notebook's lesson code against the package -------------------------------------------------
@pytest.fixture(scope="module")
def notebook_app_parts():
    models = cell_namespace(NB15, "class PriceRequest(")
    for name in ("PriceRequest", "PriceResponse"):  # cell_namespace compiles with postponed annotations: resolve them
        models[name].model_rebuild(_types_namespace=models)
    routes = cell_namespace(NB15, "def build_app(", PriceRequest=models["PriceRequest"], PriceResponse=models["PriceResponse"])
    return models, routes


def test_notebook_models_have_the_package_schemas(notebook_app_parts):
    models, _ = notebook_app_parts
    assert models["PriceRequest"].model_json_schema() == service.PriceRequest.model_json_schema()
    assert models["PriceResponse"].model_json_schema() == service.PriceResponse.model_json_schema()


def test_notebook_routes_answer_as_the_package_app(notebook_app_parts):
    _, routes = notebook_app_parts
    profile = config.get_profile()
    ours = TestClient(routes["build_app"]([stub_pricer()], profile))
    theirs = TestClient(service.create_app([stub_pricer()], profile))
    assert ours.app.openapi()["paths"] == theirs.app.openapi()["paths"]
    assert ours.app.openapi()["components"] == theirs.app.openapi()["components"]
    assert ours.get("/health").json() == theirs.get("/health").json()
    for path in ("/price", "/price/stub", "/price/missing"):
        for body in [GOOD, *(case[0] for case in BAD.values())]:
            a, b = ours.post(path, json=body), theirs.post(path, json=body)
            assert a.status_code == b.status_code, (path, body)
            strip = lambda r: {k: v for k, v in r.json().items() if k != "latency_ms"}  # noqa: E731
            assert strip(a) == strip(b), (path, body)
    assert ours.post("/price", json=GOOD).json()["price"] == len(GOOD["title"])


def test_micro_batching_prices_concurrent_requests_together_and_correctly():
    calls = []

    def price_many(items):
        calls.append(len(items))
        return [float(len(it.title)) for it in items]

    app = service.create_app([service.ServedPricer("stub", "stub", price_many, batchable=True)], config.get_profile(), batch=True)

    async def many():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            titles = ["x" * n for n in range(1, 41)]
            answers = await asyncio.gather(*(client.post("/price", json={"title": t}) for t in titles))
            return titles, answers

    titles, answers = asyncio.run(many())
    assert [a.json()["price"] for a in answers] == [len(t) for t in titles]  # each request got its own price back
    assert sum(calls) == 40 and max(calls) > 1 and len(calls) < 40, calls


# --- a real uvicorn process ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """The service with the training-median pricer (it needs the data, no notebook's artefact)."""
    results = tmp_path_factory.mktemp("results")
    with service.start(config.get_profile(), pricers=("median",), env={config.RESULTS_ENV: str(results)}, timeout=180) as handle:
        yield handle
    assert not handle.is_running()


def test_health_names_the_profile_and_the_pricer(running):
    answer = httpx.get(f"{running.url}/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["profile"] == config.get_profile().name and body["default"] == "median"
    assert body["pricers"]["median"]["model"] == "constant median"


def test_a_good_request_gets_the_training_median(running):
    from course_utils.pricing import data

    median = float(np.median([it.price for it in data.load_splits(config.get_profile()).train]))
    for path in ("/price", "/price/median"):
        answer = httpx.post(f"{running.url}{path}", json=GOOD)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["price"] == pytest.approx(median, abs=0.01) and body["model"] == "constant median" and body["pricer"] == "median"
        assert 0 <= body["latency_ms"] < 5_000


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_fix(running, case):
    body, status, field, word = BAD[case]
    check_bad(httpx.post(f"{running.url}/price", json=body), status, field, word)


def test_broken_json_and_an_unknown_pricer(running):
    broken = httpx.post(f"{running.url}/price", content=b'{"title": "Nike', headers={"content-type": "application/json"})
    check_bad(broken, 422, "(body)", "valid JSON")
    unknown = httpx.post(f"{running.url}/price/gpt-9", json=GOOD)
    assert unknown.status_code == 404 and "median" in unknown.json()["detail"] and "/health" in unknown.json()["detail"]


def test_load_test_counts_every_request(running):
    rows = service.load_test(f"{running.url}/price", [GOOD, {"title": "Lamp"}], clients=(1, 4), requests=40, progress=False)
    assert [r["clients"] for r in rows] == [1, 4]
    for row in rows:
        assert row["ok"] == 40 and row["errors"] == 0 and row["throughput_rps"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"]


def test_stop_ends_the_process_and_frees_the_port(tmp_path):
    handle = service.start(config.get_profile(), pricers=("median",), env={config.RESULTS_ENV: str(tmp_path)}, timeout=180)
    port = int(handle.url.rsplit(":", 1)[1])
    handle.stop()
    assert not handle.is_running()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("pricer, notebook", [("ensemble", "14_ensemble.ipynb"), ("baseline", "08_baselines.ipynb")])
def test_a_missing_artefact_names_the_notebook_to_run(tmp_path, pricer, notebook):
    with pytest.raises(service.ServiceStartError, match=notebook):
        service.start(config.get_profile(), pricers=(pricer,), env={config.RESULTS_ENV: str(tmp_path)}, timeout=180)


def test_unknown_pricer_names_are_refused_before_starting_anything():
    with pytest.raises(ValueError, match="choose from"):
        service.start(config.get_profile(), pricers=("gpt-9",))


# --- the specialist as a GGUF ----------------------------------------------------------------------
def test_specialist_gguf_holds_the_merged_weights_and_answers_like_transformers(tmp_path, monkeypatch):
    """A small random adapter, merged and exported: the file's tensors are the merged weights (in llama.cpp's
    row order), and llama.cpp continues pricing prompts with the same greedy digits as transformers."""
    import gguf
    import torch
    from openai import OpenAI
    from peft import get_peft_model

    from course_utils.foundations import models
    from course_utils.pricing import data, qlora, training
    from course_utils.chat.llm import LocalServer
    from course_utils.pricing.specialist import predict

    need_module("llama_cpp", "llama-cpp-python is not installed")  # LocalServer's fallback when llama-server is not built
    monkeypatch.setenv(config.RESULTS_ENV, str(tmp_path))
    profile = config.get_profile()
    torch.manual_seed(0)
    adapted = get_peft_model(models.load_causal_lm("base_model", profile), qlora.lora_config(profile))
    with torch.no_grad():
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (no change); a small random B makes the merge matter
                weight.normal_(0, 0.02)
    qlora.save_adapter(adapted, qlora.adapter_dir(profile))
    path = service.export_specialist_gguf(profile, progress=False)
    assert service.export_specialist_gguf(profile, progress=False) == path  # written once, then reused

    merged = qlora.load_finetuned(profile, quantized=False)
    base = models.load_causal_lm("base_model", profile)
    name = "model.layers.0.self_attn.v_proj.weight"
    assert not torch.allclose(merged.state_dict()[name], base.state_dict()[name])  # the adapter changed it
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    written = np.asarray(tensors["blk.0.attn_v.weight"].data, dtype=np.float32)
    assert np.allclose(written, merged.state_dict()[name].numpy(), atol=2e-3)  # float16 of the merged weight

    tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
    items = data.eval_set(profile)[:6]
    expected = [p.greedy for p in predict(merged, tokenizer, items, top_k=1, progress=False)]
    server = LocalServer(path, alias="qlora-specialist", n_ctx=1024).start()
    try:
        client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
        served = [service.SpecialistServer(server, client, tokenizer, fallback=-1.0).price(it) for it in items]
    finally:
        server.stop()
    agree = sum(a == b for a, b in zip(expected, served))
    assert agree >= len(items) - 1, (expected, served)  # float16 may flip one near-tie, not more


def test_a_killed_parent_takes_the_service_with_it(tmp_path):
    """A kernel killed with SIGKILL runs no exit handler: the service notices its parent is gone and stops."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time; from course_utils.core import config; from course_utils.serving import service\n"
        "h = service.start(config.get_profile(), pricers=('median',), timeout=180)\n"
        "print(h.process.pid, h.url, flush=True); time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, config.RESULTS_ENV: str(tmp_path)})  # fmt: skip
    pid, url = parent.stdout.readline().split()
    assert httpx.get(f"{url}/health").status_code == 200
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.2)
    assert not _alive(int(pid)), "the service outlived the process that started it"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
