"""The course's pricer as a web service: a FastAPI app, a uvicorn process, and the pricers behind it.

    handle = service.start(profile, pricers=("baseline",))   # a real uvicorn process on 127.0.0.1
    httpx.post(f"{handle.url}/price", json={"title": "Nike running shoes"}).json()
    # {"price": ..., "model": "baseline stack (...)", "pricer": "baseline", "latency_ms": ...}
    handle.stop()

Routes: `POST /price` (the first pricer), `POST /price/{pricer}` (a named one), `GET /health`.
Bad input gets a 4xx whose body names each problem and its fix. Notebook 15 writes the request and
response models and the route functions out in its cells; tests/test_service.py checks that the
notebook's app and `create_app` answer alike. Notebook 16 (agents) calls the running service.

The pricers are the ones notebooks 08-14 made, rebuilt from what they saved:

    baseline     notebook 08's baseline stack, refitted with the same seed (notebook 08 stores its
                 scores and predictions, not the fitted model) and kept with joblib
    specialist   notebook 10's LoRA adapter merged into the base model, written as a GGUF and served by
                 the course's llama.cpp server (`llm.LocalServer`): the same `openai` client calls it
    rag          notebook 13's Chroma store and the chat model (`rag_pricer.RAGPricer`)
    ensemble     notebook 14's blend weights (in the results store) over the four inputs above,
                 with notebook 13's embedding forest refitted on the stored vectors
    median       the training median (notebook 08's constant baseline): needs only the data, so it is
                 what tests and smoke checks start

A missing artefact raises `MissingArtifactError`, naming the notebook to run.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..core import config
from ..pricing.items import Item
from ..core.runtime import stop_with_parent

PRICERS = ("baseline", "specialist", "rag", "ensemble", "median")
NOTEBOOKS = {
    "median": "07_product_data.ipynb",
    "baseline": "08_baselines.ipynb",
    "specialist": "10_qlora.ipynb (then 11_evaluating_the_finetune.ipynb)",
    "rag": "13_rag_pricer.ipynb",
    "ensemble": "14_ensemble.ipynb",
}
PRICERS_ENV = "COURSE_SERVICE_PRICERS"  # how `start` tells the uvicorn process what to load
BATCH_ENV = "COURSE_SERVICE_BATCH"

MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
MAX_FIELD_CHARS = 200
CONDITIONS = ("New", "Like new", "Good", "Fair", "Poor")


class MissingArtifactError(FileNotFoundError):
    """Something a pricer is rebuilt from is not there; the message names the notebook that makes it."""


def _missing(pricer: str, what: str, profile: config.Profile) -> MissingArtifactError:
    return MissingArtifactError(
        f"the {pricer} pricer needs {what}, which is missing for profile {profile.name!r}: "
        f"run notebooks/{NOTEBOOKS[pricer]} (COURSE_PROFILE={profile.name}) first"
    )


# --- the request and the response ---------------------------------------------------------------
class PriceRequest(BaseModel):
    """One listing to price: what a seller types, nothing the service could not know."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, description="the listing's headline")
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS)
    category: Optional[str] = Field(None, max_length=MAX_FIELD_CHARS, description="levels joined by ' > ', top first")
    brand: Optional[str] = Field(None, max_length=MAX_FIELD_CHARS)
    condition: Optional[Literal["New", "Like new", "Good", "Fair", "Poor"]] = None
    shipping_paid_by_seller: Optional[bool] = Field(None, strict=True)


class PriceResponse(BaseModel):
    price: float = Field(description="US dollars")
    model: str = Field(description="the model that priced it")
    pricer: str = Field(description="the service's name for that pricer")
    latency_ms: float = Field(description="time spent pricing inside the service")


def request_to_item(request: PriceRequest) -> Item:
    """An Item to hand a pricer. Its id is new each time: the baseline features cache by id."""
    categories = tuple(p.strip() for p in (request.category or "").split(">") if p.strip())
    return Item(
        id=f"request-{uuid.uuid4().hex}",
        title=request.title,
        description=request.description,
        categories=categories,
        brand=request.brand or None,
        condition=request.condition,
        shipping_paid_by_seller=request.shipping_paid_by_seller,
        price=1.0,  # unknown: an Item needs a positive price, no pricer reads it
    )


_FIXES = {
    "missing": "add it: the field is required",
    "string_too_short": "send a non-empty value (whitespace alone counts as empty)",
    "string_too_long": "shorten it to at most {max_length} characters",
    "string_type": "send it as a JSON string",
    "bool_type": "send true or false (JSON booleans, not strings)",
    "literal_error": "use one of: {expected}",
    "extra_forbidden": "remove it; the fields are: {fields}",
    "json_invalid": "send a valid JSON object with the header Content-Type: application/json",
    "model_attributes_type": "send a JSON object such as {{\"title\": \"Nike running shoes\"}}",
    "dict_type": "send a JSON object such as {{\"title\": \"Nike running shoes\"}}",
    "too_long": "send at most {max_length} (split the request)",
    "too_short": "send at least {min_length}",
    "value_error": "change the value as the problem says",
}


def explain_errors(errors: Sequence[dict]) -> list[dict]:
    """pydantic's validation errors as {field, problem, fix}: what is wrong and what to send instead."""
    explained = []
    for error in errors:
        where = [str(p) for p in error.get("loc", ()) if p != "body"]
        context = {**(error.get("ctx") or {}), "fields": ", ".join(PriceRequest.model_fields)}
        fix = _FIXES.get(error.get("type", ""), "see GET /docs for the request schema")
        if error.get("type") == "json_invalid":
            where = []  # the position in the text, not a field
        explained.append({"field": ".".join(where) or "(body)", "problem": error.get("msg", ""), "fix": fix.format(**context)})
    return explained


# --- the app ------------------------------------------------------------------------------------
@dataclass
class ServedPricer:
    """A pricer the app serves: `price_many(items) -> prices`, under a display name."""

    key: str
    model: str
    price_many: Callable[[list[Item]], Sequence[float]]
    info: dict = field(default_factory=dict)
    source: object = None  # the pricer object behind it, when a caller wants more than prices
    batchable: bool = False  # vectorised: one call for many listings costs little more than for one


class MicroBatcher:
    """Gathers requests that arrive within `wait_ms` into one `price_many` call (up to `max_batch`).

    A vectorised model (the baseline stack) prices 32 items in about the time of 2, so under
    concurrent load one call for many requests raises throughput; a lone request waits `wait_ms`.
    """

    def __init__(self, price_many, max_batch: int = 32, wait_ms: float = 2.0):
        self.price_many, self.max_batch, self.wait = price_many, max_batch, wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.sizes: list[int] = []

    async def price(self, item: Item) -> float:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())  # kept: a task nobody holds may be collected
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = time.perf_counter() + self.wait
            while len(batch) < self.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.sizes.append(len(batch))
            try:
                prices = await asyncio.to_thread(self.price_many, [item for item, _ in batch])
                for (_, future), value in zip(batch, prices):
                    future.set_result(float(value))
            except Exception as exc:  # every waiting request gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)


def create_app(
    pricers: Sequence[ServedPricer],
    profile: config.Profile | None = None,
    batch: bool = False,
    on_shutdown: Sequence[Callable[[], None]] = (),
):
    """The FastAPI app: `POST /price` (first pricer), `POST /price/{pricer}`, `GET /health`.

    `on_shutdown` runs when the server shuts down (uvicorn's lifespan): it stops the model servers the
    pricers started. Exit handlers are not enough: after a graceful shutdown on SIGTERM, uvicorn re-raises
    the signal, and the default handler ends the process without running them.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    if not pricers:
        raise ValueError("the service needs at least one pricer")
    profile = profile or config.get_profile()
    served = {p.key: p for p in pricers}
    default = pricers[0].key
    batchers = {key: MicroBatcher(p.price_many) for key, p in served.items() if p.batchable} if batch else {}
    @asynccontextmanager
    async def lifespan(app):
        yield
        for stop in on_shutdown:
            stop()

    app = FastAPI(title="Course pricer", version="1.0", description="Prices second-hand listings with the course's models.", lifespan=lifespan)
    app.state.pricers, app.state.batchers = served, batchers

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": explain_errors(exc.errors())})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "profile": profile.name, "default": default,
                "pricers": {key: {"model": p.model, **p.info} for key, p in served.items()}}  # fmt: skip

    async def price_with(key: str, request: PriceRequest) -> PriceResponse:
        if key not in served:
            raise HTTPException(404, detail=f"no pricer {key!r} in this service; use one of: {', '.join(served)} (GET /health lists them)")
        item = request_to_item(request)
        started = time.perf_counter()
        if key in batchers:
            price = await batchers[key].price(item)
        else:
            price = float((await run_in_threadpool(served[key].price_many, [item]))[0])
        latency = 1000 * (time.perf_counter() - started)
        return PriceResponse(price=round(price, 2), model=served[key].model, pricer=key, latency_ms=round(latency, 2))

    @app.post("/price", response_model=PriceResponse)
    async def price(request: PriceRequest) -> PriceResponse:
        return await price_with(default, request)

    @app.post("/price/{pricer}", response_model=PriceResponse)
    async def price_named(pricer: str, request: PriceRequest) -> PriceResponse:
        return await price_with(pricer, request)

    return app


# --- the pricers, rebuilt from what notebooks 08-14 saved -----------------------------------------
_TOKENIZERS: dict[str, object] = {}


def with_capped_prompts(items: Sequence[Item], profile: config.Profile) -> list[Item]:
    """The items with their model text capped in tokens, as curation caps every listing (notebook 07): the LLM
    pricers and the embeddings read `item.text`, and they must see what they saw on the stored splits."""
    from ..pricing.data import with_prompts
    from ..foundations.models import load_tokenizer

    if profile.name not in _TOKENIZERS:
        _TOKENIZERS[profile.name] = load_tokenizer("chat_model", profile)
    return with_prompts(list(items), _TOKENIZERS[profile.name], profile.size("max_tokens_prompt"))


def service_dir(profile: config.Profile) -> Path:
    path = profile.work_dir / "service"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stored_models(profile: config.Profile, split: str = "eval") -> list[str]:
    from ..pricing import results

    frame = results.load_results(profile)
    return list(frame[frame["split"] == split]["model"]) if not frame.empty else []


def baseline_pricer(profile: config.Profile | None = None) -> ServedPricer:
    """Notebook 08's baseline stack: refitted with the same seed and items, then kept with joblib."""
    import joblib

    from ..pricing import baseline_stack, data
    from ..pricing.data import data_version

    profile = profile or config.get_profile()
    if baseline_stack.BEST_BASELINE not in _stored_models(profile):
        raise _missing("baseline", f"the scores of {baseline_stack.BEST_BASELINE!r} in the results store", profile)
    path = service_dir(profile) / f"baseline-stack-{data_version(profile)}.joblib"
    if path.is_file():
        stack = joblib.load(path)
    else:
        splits = data.load_splits(profile)
        stack = baseline_stack.all_baselines(seed=profile.seed, holdout=data.baseline_val_set(profile))[-1]
        stack.fit(splits.train)
        tmp = path.with_suffix(".partial")
        joblib.dump(stack, tmp)
        os.replace(tmp, path)
    lock = threading.Lock()  # its features cache is a plain dict: one prediction at a time

    def price_many(items):
        with lock:
            return stack.predict(items)

    return ServedPricer("baseline", stack.name, price_many, {"kind": "baseline", "members": len(stack.members)}, stack, batchable=True)


def export_specialist_gguf(profile: config.Profile | None = None, out_type: str = "F16", progress: bool = True) -> Path:
    """Notebook 10's adapter merged into the base model and written as a GGUF file (once; then reused).

    Offline the base model *is* a GGUF file, so the new file copies its metadata (architecture, tokenizer,
    chat template) and replaces every tensor with the merged weights. llama.cpp stores the query and key
    projections with their rows interleaved for its rotary embedding: transformers undid that when it
    loaded the GGUF, so it is redone here. The Hub profiles use llama.cpp's own converter (deploy/README.md).
    """
    import hashlib

    import gguf
    import numpy as np

    from ..pricing import qlora
    from ..foundations.models import gguf_path

    profile = profile or config.get_profile()
    adapter = qlora.adapter_dir(profile)
    weights = next((adapter / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (adapter / n).is_file()), None)
    if weights is None:
        raise _missing("specialist", f"the LoRA adapter in {adapter}", profile)
    if not profile.base_model.offline:
        raise NotImplementedError(
            f"profile {profile.name!r} fine-tunes a Hub model: merge it (qlora.load_finetuned) and convert it with llama.cpp's "
            "convert_hf_to_gguf.py as deploy/README.md shows, or serve it with vLLM and --enable-lora"
        )
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    target = service_dir(profile) / f"specialist-{digest}-{out_type.lower()}.gguf"
    if target.is_file():
        return target

    model = qlora.load_finetuned(profile, quantized=False)  # merge_and_unload(): plain weights again
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    reader = gguf.GGUFReader(gguf_path(profile.base_model))
    arch_name = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    by_gguf = {}
    for hf_name, array in state.items():
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            continue
        heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}
        for proj, n_head in heads.items():
            if f".{proj}." in hf_name:  # llama.cpp's row order for rotary embeddings
                array = array.reshape(n_head, 2, array.shape[0] // n_head // 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)
        by_gguf[new] = array
    missing = [t.name for t in reader.tensors if t.name not in by_gguf]
    if missing:
        raise ValueError(f"the merged model has no weights for GGUF tensors {missing[:5]}: is it the base model's architecture?")

    tmp = target.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    for f in reader.fields.values():
        if f.name in (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE, gguf.Keys.General.NAME) or f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        writer.add_key_value(f.name, f.contents(), kind, sub_type=f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    f16 = out_type.upper() == "F16"
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_string(gguf.Keys.General.NAME, f"{profile.base_model.short_name} + qlora-pricer (merged)")
    for t in reader.tensors:
        array = by_gguf[t.name]
        # 1-D tensors (norms) stay fp32, as llama.cpp's converter keeps them
        writer.add_tensor(t.name, array.astype(np.float16 if f16 and array.ndim > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=progress)
    writer.close()
    os.replace(tmp, target)
    return target


def specialist_prompt_text(tokenizer, item: Item) -> str:
    """The fine-tuning chat rendered as text, up to "Price is $" (specialist.prompt_text)."""
    from ..pricing.specialist import prompt_text

    return prompt_text(tokenizer, item)


def read_digits(text: str, max_digits: int = 5) -> float | None:
    """The price a completion starts with: its leading digits ("129.00" -> 129), None without any."""
    digits = ""
    for ch in text:
        if not ch.isdigit() or len(digits) >= max_digits:
            break
        digits += ch
    return float(digits) if digits and not digits.startswith("0") else None


def _top_tokens(logprobs) -> list[tuple[str, float]]:
    """[(token text, log probability)] of the first generated position, most likely first.

    llama-server answers in the chat format (`content[0].top_logprobs`), llama-cpp-python's server in the
    legacy completions format (`top_logprobs[0]`, a {token: logprob} dict); both are read.
    """
    content = getattr(logprobs, "content", None) or (logprobs.get("content") if isinstance(logprobs, dict) else None)
    if content:
        first = content[0]
        tops = first["top_logprobs"] if isinstance(first, dict) else first.top_logprobs
        pairs = [(t["token"], t["logprob"]) if isinstance(t, dict) else (t.token, t.logprob) for t in tops]
    else:
        legacy = getattr(logprobs, "top_logprobs", None) or []
        pairs = list(legacy[0].items()) if legacy else []
    return sorted(pairs, key=lambda pair: -pair[1])


@dataclass
class SpecialistServer:
    """The merged specialist in the course's llama.cpp server, called with the `openai` client.

    `mode="greedy"` is one completion a listing. `mode="weighted"` is notebook 11's probability-weighted
    reading over the server's answers: one call for the first token's top log-probabilities, then one
    greedy completion for each of the `top_k` number tokens among them, averaged on log(1 + price).
    """

    server: object  # llm.LocalServer
    client: object  # openai.OpenAI
    tokenizer: object
    fallback: float  # the training median, for the rare answer with no digits
    mode: str = "greedy"
    top_k: int = 5
    max_digits: int = 5
    no_number: int = 0
    profile: config.Profile | None = None  # set: listings' texts are capped in tokens first, as curation does

    def _complete(self, prompt: str, **kwargs):
        return self.client.completions.create(model=self.server.alias, prompt=prompt, temperature=0, **kwargs).choices[0]

    def price(self, item: Item) -> float:
        # The prompt already holds the chat template and "Price is $", so a plain completion continues with the digits.
        prompt = specialist_prompt_text(self.tokenizer, item)
        if self.mode == "greedy":
            value = read_digits(self._complete(prompt, max_tokens=self.max_digits + 1).text, self.max_digits)
        else:
            value = self.weighted(prompt)
        if value is None:
            self.no_number += 1
            return self.fallback
        return value

    def weighted(self, prompt: str) -> float | None:
        from ..pricing.specialist import weighted_log_price

        first = self._complete(prompt, max_tokens=1, logprobs=max(20, 4 * self.top_k))  # more than k: some are not digits
        starts = [(t, lp) for t, lp in _top_tokens(first.logprobs) if t.isascii() and t.isdigit() and not t.startswith("0")][: self.top_k]
        candidates = []
        for token, logprob in starts:
            more = "" if len(token) >= self.max_digits else self._complete(prompt + token, max_tokens=self.max_digits).text
            digits = (token + (read_digits_text(more) or ""))[: self.max_digits]
            candidates.append((float(digits), math.exp(logprob)))
        return weighted_log_price(candidates) if candidates else None

    def price_many(self, items: Sequence[Item]) -> list[float]:
        if self.profile is not None:
            items = with_capped_prompts(items, self.profile)
        return [self.price(it) for it in items]


def read_digits_text(text: str) -> str | None:
    """The digits a text starts with ("29.00" -> "29"), zeros included; None when it starts otherwise."""
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return digits or None


def best_specialist_reading(profile: config.Profile) -> str:
    """The reading (greedy or weighted) with the lower RMSLE on ensemble_val in the results store, as notebook 11 picks
    it on validation items; greedy when neither is stored."""
    from ..pricing import results

    frame = results.load_results(profile)
    if frame.empty:
        return "greedy"
    rows = frame[(frame["split"] == "ensemble_val") & frame["model"].isin(["qlora-specialist-greedy", "qlora-specialist-weighted"])]
    return str(rows.sort_values("rmsle").iloc[0]["model"]).rsplit("-", 1)[1] if len(rows) else "greedy"


def start_specialist_server(profile: config.Profile | None = None, slots: int | None = None, mode: str | None = None) -> SpecialistServer:
    """Export the specialist GGUF (once), serve it with `llm.LocalServer`, and point an `openai` client at it."""
    from openai import OpenAI
    import numpy as np

    from ..foundations import models
    from ..pricing import data, training
    from ..chat.llm import LocalServer

    profile = profile or config.get_profile()
    path = export_specialist_gguf(profile, progress=False)
    # the GGUF's own chat template is not used: the prompt is rendered here, as in notebook 11
    server = LocalServer(path, alias="qlora-specialist", slots=slots, n_ctx=1024).start()
    client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=60)
    tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
    median = float(np.median([it.price for it in data.load_splits(profile).train]))
    mode = mode or best_specialist_reading(profile)
    served = SpecialistServer(server, client, tokenizer, median, mode=mode, top_k=profile.size("price_top_k"), profile=profile)
    _SPECIALIST_SERVERS.append(served)
    return served


_SPECIALIST_SERVERS: list[SpecialistServer] = []  # what stop_model_servers stops


SPECIALIST_SLOTS = 4  # llama-server slots: each keeps its own prompt cache, so concurrent clients do not evict each other's


def specialist_pricer(profile: config.Profile | None = None, mode: str | None = None, slots: int = SPECIALIST_SLOTS) -> ServedPricer:
    """The GGUF specialist with `slots` parallel slots: the weighted reading's k follow-up calls reuse the prompt
    a slot has just read, which with one slot and several clients is evicted by the other clients' prompts."""
    served = start_specialist_server(profile, mode=mode, slots=slots)
    return ServedPricer("specialist", f"qlora-specialist-{served.mode} (GGUF, llama.cpp)", served.price_many,
                        {"kind": "fine-tuned", "reading": served.mode, "server": served.server.kind, "gguf": served.server.model_path.name}, served)  # fmt: skip


def rag_pricer(profile: config.Profile | None = None, use_cache: bool = True):
    """Notebook 13's RAG pricer over its Chroma store; the store must hold listings."""
    from ..chat.llm import get_backend
    from ..pricing.rag_pricer import RAGPricer
    from ..retrieval.vectorstore import ProductStore

    profile = profile or config.get_profile()
    store = ProductStore(profile)
    if store.count() == 0:
        raise _missing("rag", f"the product store at {store.path}", profile)
    pricer = RAGPricer(store, get_backend(model=profile.bulk_model), k=5, use_cache=use_cache)
    return ServedPricer("rag", pricer.name, lambda items: pricer.price_many(with_capped_prompts(items, profile), progress=False),
                        {"kind": "rag", "llm": pricer.backend.model, "listings": store.count()}, pricer)  # fmt: skip


def stored_ensemble(profile: config.Profile):
    """Notebook 14's fitted blend, read back from its entry in the results store."""
    from ..pricing import results
    from ..pricing.ensemble import ENSEMBLE_NAME, Ensemble

    entries = json.loads(results.results_path().read_text()).get("entries", []) if results.results_path().is_file() else []
    mine = [e for e in entries if e.get("model") == ENSEMBLE_NAME and e.get("profile") == profile.name and e.get("split") == "eval"]
    if not mine or "weights" not in mine[-1].get("extra", {}):
        raise _missing("ensemble", "the fitted blend (its weights in the results store)", profile)
    extra = mine[-1]["extra"]
    return Ensemble(dict(extra["inputs"]), dict(extra["weights"]), float(extra["intercept"]))


def ensemble_pricer(profile: config.Profile | None = None, parts: dict | None = None) -> ServedPricer:
    """The blend over live inputs: the specialist, the RAG pricer, the embedding forest and the baseline stack."""
    from ..pricing.rag_pricer import EmbeddingForest

    profile = profile or config.get_profile()
    blend = stored_ensemble(profile)
    parts = dict(parts or {})
    if "specialist" not in parts:
        parts["specialist"] = specialist_pricer(profile)
    if "rag" not in parts:
        parts["rag"] = rag_pricer(profile)
    if "baseline" not in parts:
        parts["baseline"] = baseline_pricer(profile)
    store = parts["rag"].source.store
    forest = EmbeddingForest(store, seed=profile.seed).fit()
    parts["forest"] = ServedPricer("forest", forest.name, lambda items: forest.predict_many(with_capped_prompts(items, profile)))
    unknown = [role for role in blend.roles if role not in parts]
    if unknown:
        raise _missing("ensemble", f"inputs {unknown} this service cannot rebuild", profile)

    # One listing at a time: each input is already as fast as the cores allow, and two requests in flight would
    # run two model servers and the embedding model at once on the same cores, each spinning its own threads.
    lock = threading.Lock()

    def price_many(items):
        with lock:
            items = with_capped_prompts(items, profile)
            columns = [list(parts[role].price_many(items)) for role in blend.roles]
        return list(blend.predict([list(row) for row in zip(*columns)]))

    return ServedPricer("ensemble", "ensemble", price_many, {"kind": "ensemble", "inputs": blend.models, "weights": blend.weights})


def median_pricer(profile: config.Profile | None = None) -> ServedPricer:
    """The training split's median price for every listing: the floor any pricer must beat."""
    import numpy as np

    from ..pricing import data

    median = float(np.median([it.price for it in data.load_splits(profile or config.get_profile()).train]))
    return ServedPricer("median", "constant median", lambda items: [median] * len(items), {"kind": "baseline", "price": median}, batchable=True)


def load_pricers(keys: Sequence[str], profile: config.Profile | None = None) -> list[ServedPricer]:
    """The named pricers, built once each (the ensemble reuses the others when they are loaded too)."""
    profile = profile or config.get_profile()
    unknown = [k for k in keys if k not in PRICERS]
    if unknown or not keys:
        raise ValueError(f"unknown pricers {unknown or keys}; choose from {', '.join(PRICERS)}")
    built: dict[str, ServedPricer] = {}
    for key in sorted(keys, key=lambda k: k == "ensemble"):  # the ensemble last: it reuses the others
        if key == "baseline":
            built[key] = baseline_pricer(profile)
        elif key == "specialist":
            built[key] = specialist_pricer(profile)
        elif key == "rag":
            built[key] = rag_pricer(profile)
        elif key == "median":
            built[key] = median_pricer(profile)
        else:
            built[key] = ensemble_pricer(profile, parts=built)
    # Warm-up: a first call loads what loads lazily (the embedding model, the servers' first prompt), so the
    # service answers /health only when every pricer answers at its usual speed.
    warm = Item(id="warm-up", title="Warm-up listing", description="", price=1.0)
    for pricer in built.values():
        pricer.price_many([warm])
    return [built[k] for k in keys]


def app_from_env():
    """The app uvicorn builds (`--factory course_utils.serving.service:app_from_env`): pricers from $COURSE_SERVICE_PRICERS."""
    from ..core.start import start as course_start

    profile = course_start(quiet=True)  # the profile, seeds, the network guard: what the first cell does
    keys = [k.strip() for k in os.environ.get(PRICERS_ENV, "baseline").split(",") if k.strip()]
    batch = os.environ.get(BATCH_ENV, "0").lower() in {"1", "true", "yes"}
    return create_app(load_pricers(keys, profile), profile, batch=batch, on_shutdown=[stop_model_servers])


def stop_model_servers() -> None:
    """Stop every llama.cpp server this process started: the specialists' and the chat model's."""
    from ..chat.llm import stop_local_server

    for served in _SPECIALIST_SERVERS:
        served.server.stop()
    _SPECIALIST_SERVERS.clear()
    stop_local_server()


# --- a real uvicorn process ---------------------------------------------------------------------
class ServiceStartError(RuntimeError):
    """The service process exited or did not answer /health in time; the message holds its log tail."""


@dataclass
class ServiceHandle:
    """A running service: `url`, `health()`, `stop()`; stopped at interpreter exit too."""

    url: str
    process: subprocess.Popen
    log_path: Path
    pricers: tuple[str, ...]

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path.exists() else "(no log)"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the service: uvicorn shuts down gracefully and its lifespan stops the model servers; any child
        still alive afterwards (the service was killed, say) is ended here, so no llama.cpp server is left behind."""
        import psutil

        if self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for child in children:
            try:
                child.terminate()
                child.wait(timeout=10)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.Error:
                pass  # already gone

    def __enter__(self) -> "ServiceHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    profile: config.Profile | None = None,
    pricers: Sequence[str] | str = ("baseline",),
    port: int | None = None,
    batch: bool = True,
    timeout: float = 300.0,
    env: dict | None = None,
) -> ServiceHandle:
    """Start the service as a uvicorn process on 127.0.0.1 (a free port unless `port`), ready when it returns.

    `pricers` names what it loads ("baseline", "specialist", "rag", "ensemble"); the first answers
    `POST /price`. `batch=True` gathers concurrent requests to a vectorised pricer (the baseline stack) into one
    model call; the LLM pricers are called one request at a time either way. Loading can take a
    while (the ensemble loads every pricer); a missing artefact ends the process, and its error,
    naming the notebook to run, is raised here.
    """
    import httpx

    from ..chat.llm import free_port

    profile = profile or config.get_profile()
    keys = (pricers,) if isinstance(pricers, str) else tuple(pricers)
    unknown = [k for k in keys if k not in PRICERS]
    if unknown or not keys:
        raise ValueError(f"unknown pricers {unknown or keys}; choose from {', '.join(PRICERS)}")
    port = port or free_port()
    log_path = config.cache_dir() / "logs" / f"pricer-service-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, config.PROFILE_ENV: profile.name, PRICERS_ENV: ",".join(keys), BATCH_ENV: "1" if batch else "0",
                 **(env or {})}  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "course_utils.serving.service:app_from_env", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)
    # a killed kernel takes the service with it: SIGTERM, so its lifespan still stops the model servers
    stop_with_parent(process.pid)
    handle = ServiceHandle(f"http://127.0.0.1:{port}", process, log_path, keys)
    atexit.register(handle.stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(_start_failure(handle))
        try:
            if httpx.get(f"{handle.url}/health", timeout=1).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    handle.stop()
    raise ServiceStartError(f"the service did not answer /health within {timeout:.0f} s; log tail ({log_path}):\n{handle.log_tail()}")


def _start_failure(handle: ServiceHandle) -> str:
    """The child's own error line first (a MissingArtifactError names the notebook to run), then the log tail."""
    tail = handle.log_tail(40)
    lines = [ln for ln in tail.splitlines() if "Error:" in ln]
    head = lines[-1].strip() if lines else f"the service process exited with code {handle.process.returncode}"
    return f"{head}\nlog tail ({handle.log_path}):\n{tail}"


# --- a bounded load test ------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


async def _load(url: str, payloads: Sequence[dict], clients: int, requests: int, timeout: float, bar) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    order = iter(range(requests))  # each client takes the next request number until none are left

    async def client_loop(http):
        for i in order:
            started = time.perf_counter()
            try:
                response = await http.post(url, json=payloads[i % len(payloads)])
                response.raise_for_status()
                latencies.append(1000 * (time.perf_counter() - started))
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if bar is not None:
                bar.update(1)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {"clients": clients, "requests": requests, "ok": len(latencies), "errors": len(errors),
            "seconds": round(seconds, 3), "throughput_rps": len(latencies) / seconds if seconds else float("nan"),
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "first_error": errors[0] if errors else ""}  # fmt: skip


def load_test(
    url: str,
    payloads: Sequence[dict],
    clients: Sequence[int] = (1, 4, 16),
    requests: int = 100,
    timeout: float = 120.0,
    progress: bool = True,
    desc: str = "load test",
) -> list[dict]:
    """POST `requests` payloads to `url` with each number of concurrent `clients`; one row per level.

    Each client sends its next request as soon as its last one is answered (a closed loop), so the
    throughput is what the service sustains at that concurrency and the latency is what each client waits.
    Runs in a thread of its own, so it works inside Jupyter's already-running event loop too.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if not payloads:
        raise ValueError("the load test needs at least one payload")
    rows = []
    for n in clients:
        bar = tqdm(total=requests, desc=f"{desc}, {n} client{'s' if n > 1 else ''}", disable=not progress, leave=False)
        with ThreadPoolExecutor(1) as pool:
            rows.append(pool.submit(asyncio.run, _load(url, payloads, n, requests, timeout, bar)).result())
        bar.close()
    return rows


def request_payloads(items: Sequence[Item]) -> list[dict]:
    """The `POST /price` bodies for listings (what a seller would type: no price, no id)."""
    payloads = []
    for it in items:
        body = {"title": it.title[:MAX_TITLE_CHARS], "description": it.description[:MAX_DESCRIPTION_CHARS],
                "category": " > ".join(it.categories)[:MAX_FIELD_CHARS] or None, "brand": (it.brand or "")[:MAX_FIELD_CHARS] or None,
                "condition": it.condition if it.condition in CONDITIONS else None, "shipping_paid_by_seller": it.shipping_paid_by_seller}  # fmt: skip
        payloads.append({k: v for k, v in body.items() if v is not None})
    return payloads
