"""The pricer service's HTTP contract and app (notebook 15): typed request and response, 4xx answers that say how
to fix a request, `POST /price`, `POST /price/{pricer}`, `GET /health`, and optional micro-batching.

Notebook 15 writes the request and response models and the route functions out in its cells;
tests/test_service.py checks that the notebook's app and `create_app` answer alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Callable, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..core import config
from ..pricing.items import Item
from .served import ServedPricer

MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
MAX_FIELD_CHARS = 200
CONDITIONS = ("New", "Like new", "Good", "Fair", "Poor")


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
