"""Talking to a chat model: messages, streaming, few-shot prompts, structured output, tools.

Everything goes through `course_utils.llm.get_backend()`: the real `openai` client,
pointed at OpenAI, at any OpenAI-compatible server, or (by default) at the embedded
llama.cpp server running the profile's local stand-in for a frontier model.

Structured output
    A pydantic model is the schema. OpenAI gets it as a strict JSON schema
    (`chat.completions.parse`); llama.cpp gets `response_format={"type": "json_object",
    "schema": ...}`, which llama-cpp-python turns into a grammar that constrains
    sampling; other OpenAI-compatible servers get `json_schema`. Whatever comes back
    is parsed and validated with pydantic; an invalid reply is sent back to the model
    with the validation error and retried, and after the last retry
    `StructuredOutputError` is raised with every attempt. Nothing invalid is returned.

Tool calling
    `run_tools()` keeps calling tools until the model answers. With OpenAI (and
    servers that implement `tools`) it uses native tool calls. llama-cpp-python only
    lets the model *choose* a tool with the `chatml-function-calling` chat format,
    which SmolLM2's own template is not: measured against the embedded server,
    `tool_choice="auto"` is ignored (plain text comes back) and only naming one
    function forces a call. So for the local server each turn is a JSON-schema
    constrained *decision*: `{"tool": ..., "arguments": {...}}` or `{"answer": ...}`.
    A model that answers without calling a tool is recorded as such
    (`ToolRun.tool_called`), and `require_tool=True` constrains the first turn to a
    tool call. Repeated identical calls and the round limit end in a constrained answer,
    so the loop always terminates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from pydantic import BaseModel, Field, ValidationError


# --- messages ---------------------------------------------------------------------------
def system(content: str) -> dict:
    return {"role": "system", "content": content}


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def conversation(system_prompt: str | None, turns: Sequence[tuple[str, str]], question: str) -> list[dict]:
    """System prompt, earlier (user, assistant) turns, then the new question.

    Chat models are stateless: the whole history is sent with every request.
    """
    messages = [system(system_prompt)] if system_prompt else []
    for asked, answered in turns:
        messages += [user(asked), assistant(answered)]
    return messages + [user(question)]


def few_shot_messages(instruction: str, examples: Sequence[tuple[str, str]], query: str) -> list[dict]:
    """Zero-shot (no examples), one-shot or few-shot: each example is a user/assistant pair."""
    return conversation(instruction, examples, query)


def message_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of content parts (Gradio 6)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return str(content)


def history_to_messages(history: Sequence[dict]) -> list[dict]:
    """Gradio's chat history (openai-style dicts) -> plain role/content messages."""
    messages = []
    for item in history or []:
        role = item.get("role") if isinstance(item, dict) else None
        if role in ("user", "assistant", "system"):
            text = message_text(item.get("content"))
            if text:
                messages.append({"role": role, "content": text})
    return messages


# --- streaming --------------------------------------------------------------------------
def stream_chat(backend, messages: list[dict], **kwargs) -> Iterator[str]:
    """Yield the reply piece by piece (token deltas) as the server sends them."""
    stream = backend.client.chat.completions.create(model=backend.model, messages=messages, stream=True, **kwargs)
    try:
        for event in stream:
            if event.choices and event.choices[0].delta and event.choices[0].delta.content:
                yield event.choices[0].delta.content
    finally:
        stream.close()


def stream_text(backend, messages: list[dict], **kwargs) -> Iterator[str]:
    """Yield the growing reply (what a chat UI shows after each token)."""
    text = ""
    for piece in stream_chat(backend, messages, **kwargs):
        text += piece
        yield text


def timed_stream(backend, messages: list[dict], echo: bool = True, **kwargs) -> tuple[str, dict]:
    """Stream a reply (printing each piece as it comes when `echo`) and time it: (text, timings).

    Timings hold the time to the first piece, the total time and the number of pieces: the
    first is what a user waits before anything shows, the second what a non-streamed call costs.
    """
    import time

    started, first, pieces = time.perf_counter(), None, []
    for piece in stream_chat(backend, messages, **kwargs):
        first = first or time.perf_counter()
        pieces.append(piece)
        if echo:
            print(piece, end="", flush=True)
    total = time.perf_counter() - started
    if echo:
        print()
    if first is None:
        raise ValueError("the stream ended without any text: the model sent an empty reply")
    return "".join(pieces), {"time to first token (s)": round(first - started, 3), "total (s)": round(total, 3), "pieces": len(pieces)}


# --- structured output ------------------------------------------------------------------
class StructuredOutputError(ValueError):
    """The model did not produce valid output for the schema, even after retries."""

    def __init__(self, message: str, attempts: list[tuple[str, str]]):
        super().__init__(message)
        self.attempts = attempts  # (raw reply, error) for each try


def response_format_for(schema: type[BaseModel], kind: str) -> dict:
    """The `response_format` that asks this kind of server for JSON matching `schema`."""
    json_schema = schema.model_json_schema()
    if kind == "local":  # llama-cpp-python: schema -> grammar, sampling is constrained
        return {"type": "json_object", "schema": json_schema}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema}}


def parse_structured(text: str, schema: type[BaseModel]) -> BaseModel:
    """Validate a reply against the schema; raises ValueError with a readable reason."""
    cleaned = text.strip()
    if cleaned.startswith("```"):  # models sometimes fence JSON
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    try:
        return schema.model_validate_json(cleaned)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:5])
        raise ValueError(problems) from None


def _ask_structured(backend, messages, schema, **kwargs) -> str:
    if backend.kind == "openai":
        # The SDK sends a strict schema built from the pydantic model.
        response = backend.client.chat.completions.parse(
            model=backend.model, messages=messages, response_format=schema, **kwargs
        )
        message = response.choices[0].message
        if message.refusal:
            raise ValueError(f"the model refused: {message.refusal}")
        return message.content or ""
    response = backend.client.chat.completions.create(
        model=backend.model, messages=messages, response_format=response_format_for(schema, backend.kind), **kwargs
    )
    return response.choices[0].message.content or ""


def structured_chat(
    backend,
    messages: list[dict],
    schema: type[BaseModel],
    retries: int = 2,
    max_tokens: int = 300,
    **kwargs,
) -> BaseModel:
    """A validated instance of `schema`, or `StructuredOutputError` after `retries` retries."""
    messages = list(messages)
    attempts: list[tuple[str, str]] = []
    for _ in range(retries + 1):
        try:
            raw = _ask_structured(backend, messages, schema, max_tokens=max_tokens, **kwargs)
        except ValueError as exc:  # a refusal
            attempts.append(("", str(exc)))
            continue
        try:
            return parse_structured(raw, schema)
        except ValueError as exc:
            attempts.append((raw, str(exc)))
            # Show the model its mistake: the retry is a new, better-informed request.
            messages += [
                assistant(raw[:2000]),
                user(f"That reply was invalid ({exc}). Reply again with only JSON that matches the schema."),
            ]
    summary = "; ".join(error for _, error in attempts)
    raise StructuredOutputError(
        f"no valid {schema.__name__} after {len(attempts)} attempts: {summary}", attempts
    )


# --- tools ------------------------------------------------------------------------------
@dataclass
class Tool:
    """A function the model may call: its arguments are a pydantic model."""

    name: str
    description: str
    parameters: type[BaseModel]
    fn: Callable[[BaseModel], Any]

    def spec(self) -> dict:
        """The OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters.model_json_schema()},
        }

    def run(self, arguments: str | dict) -> str:
        """Validate the arguments and call the function; errors go back to the model as text."""
        try:
            data = json.loads(arguments) if isinstance(arguments, str) else arguments
            args = self.parameters.model_validate(data)
        except (json.JSONDecodeError, ValidationError) as exc:
            return json.dumps({"error": f"invalid arguments for {self.name}: {str(exc).splitlines()[0]}"})
        try:
            result = self.fn(args)
        except Exception as exc:  # a tool failure is information for the model, not a crash
            return json.dumps({"error": f"{self.name} failed: {type(exc).__name__}: {exc}"})
        return json.dumps(result, default=str)


@dataclass
class ToolStep:
    kind: str  # "tool_call" or "answer"
    name: str | None = None
    arguments: dict | None = None
    result: str | None = None
    note: str = ""


@dataclass
class ToolRun:
    answer: str
    steps: list[ToolStep] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    mode: str = "json"

    @property
    def tool_called(self) -> bool:
        return any(step.kind == "tool_call" for step in self.steps)

    def trace(self) -> list[dict]:
        """One row per step, for a DataFrame."""
        return [
            {"step": i, "kind": s.kind, "tool": s.name, "arguments": json.dumps(s.arguments) if s.arguments else None,
             "result": (s.result or "")[:120], "note": s.note}
            for i, s in enumerate(self.steps, 1)
        ]  # fmt: skip


def tool_decision_schema(tools: Sequence[Tool], allow_answer: bool = True, allow_tools: bool = True) -> dict:
    """The JSON schema of one turn: call one of the tools, or answer."""
    options = []
    if allow_tools:
        for tool in tools:
            params = tool.parameters.model_json_schema()
            params.pop("title", None)
            options.append(
                {
                    "type": "object",
                    "properties": {"tool": {"type": "string", "enum": [tool.name]}, "arguments": params},
                    "required": ["tool", "arguments"],
                }
            )
    if allow_answer:
        options.append({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
    if not options:
        raise ValueError("a decision needs at least one option")
    return options[0] if len(options) == 1 else {"anyOf": options}


def _tools_prompt(tools: Sequence[Tool]) -> str:
    lines = ["You can use these tools:"]
    for tool in tools:
        props = tool.parameters.model_json_schema().get("properties", {})
        args = ", ".join(f"{k} ({v.get('type', 'value')})" for k, v in props.items())
        lines.append(f"- {tool.name}({args}): {tool.description}")
    lines.append(
        'To call a tool reply with JSON {"tool": "<name>", "arguments": {...}}. '
        'When you can answer, reply with JSON {"answer": "<your answer>"}.'
    )
    return "\n".join(lines)


def _decide(backend, messages, schema: dict, max_tokens: int, **kwargs) -> dict | None:
    response = backend.client.chat.completions.create(
        model=backend.model,
        messages=messages,
        response_format={"type": "json_object", "schema": schema},
        max_tokens=max_tokens,
        **kwargs,
    )
    raw = response.choices[0].message.content or ""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _run_tools_json(backend, messages, tools, max_rounds, require_tool, max_tokens, **kwargs) -> ToolRun:
    by_name = {tool.name: tool for tool in tools}
    messages = list(messages)
    if messages and messages[0]["role"] == "system":
        messages[0] = system(messages[0]["content"] + "\n\n" + _tools_prompt(tools))
    else:
        messages.insert(0, system(_tools_prompt(tools)))
    run = ToolRun(answer="", mode="json")
    seen_calls: set[str] = set()
    must_answer = False
    for round_number in range(max_rounds + 1):
        last_round = round_number == max_rounds
        force_tool = require_tool and not run.tool_called
        allow_answer = not force_tool or last_round
        schema = tool_decision_schema(tools, allow_answer=allow_answer, allow_tools=not (must_answer or last_round))
        decision = _decide(backend, messages, schema, max_tokens, **kwargs)
        if decision is None:
            run.steps.append(ToolStep("invalid", note="reply was not valid JSON (truncated?)"))
            must_answer = True
            continue
        if "tool" in decision and decision.get("tool") in by_name:
            name, arguments = decision["tool"], decision.get("arguments") or {}
            key = json.dumps([name, arguments], sort_keys=True)
            result = by_name[name].run(arguments)
            note = "forced: the model had to call a tool" if force_tool else ""
            if key in seen_calls:
                note = "repeated call: the next turn must answer"
                must_answer = True
            seen_calls.add(key)
            run.steps.append(ToolStep("tool_call", name, arguments, result, note))
            messages += [
                assistant(json.dumps(decision)),
                user(f"Result of {name}: {result}\nUse it to answer the original question."),
            ]
            continue
        answer = str(decision.get("answer", "")).strip()
        note = "" if run.tool_called else "answered without calling a tool"
        run.steps.append(ToolStep("answer", note=note))
        run.answer = answer
        run.messages = messages + [assistant(json.dumps(decision))]
        return run
    run.answer = run.answer or "(no answer: the model kept calling tools)"
    run.messages = messages
    return run


def _run_tools_native(backend, messages, tools, max_rounds, require_tool, max_tokens, **kwargs) -> ToolRun:
    """The API's own tool calls, with one rule: each tool is offered until it has been called once (a
    small model shown a tool again after its result tends to call it again and again); with none left,
    or in the last round, the request carries no tools and the model can only answer. Notebook 04
    writes the same loop out (`run_with_tools`); tests/test_lessons_chat_rag.py checks that the two
    send the same requests and return the same answer."""
    by_name = {tool.name: tool for tool in tools}
    messages = list(messages)
    run = ToolRun(answer="", mode="native")
    for round_number in range(max_rounds + 1):
        used = {step.name for step in run.steps if step.kind == "tool_call"}
        offered = [tool.spec() for tool in tools if tool.name not in used]
        params = dict(kwargs)
        if offered and round_number < max_rounds:
            params["tools"] = offered
            params["tool_choice"] = "required" if require_tool and not run.tool_called else "auto"
        response = backend.client.chat.completions.create(model=backend.model, messages=messages, max_tokens=max_tokens, **params)
        message = response.choices[0].message
        if not message.tool_calls:
            run.steps.append(ToolStep("answer", note="" if run.tool_called else "answered without calling a tool"))
            run.answer = (message.content or "").strip()
            run.messages = messages + [assistant(run.answer)]
            return run
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            tool = by_name.get(call.function.name)
            if tool is None:
                result = json.dumps({"error": f"no tool named {call.function.name!r}"})
            else:
                result = tool.run(call.function.arguments)
            try:
                arguments = json.loads(call.function.arguments)
            except json.JSONDecodeError:
                arguments = {"raw": call.function.arguments}
            run.steps.append(ToolStep("tool_call", call.function.name, arguments, result))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    run.messages = messages
    return run


def run_tools(
    backend,
    messages: list[dict],
    tools: Sequence[Tool],
    max_rounds: int = 4,
    require_tool: bool = False,
    mode: str = "auto",
    max_tokens: int = 200,
    **kwargs,
) -> ToolRun:
    """Call tools until the model answers (at most `max_rounds` tool turns).

    mode "native" uses the API's tool calls, "json" the constrained decision, and
    "auto" picks native wherever the server parses tool calls (OpenAI, llama-server with
    --jinja) and json where it returns them as text (llama-cpp-python's server).
    """
    if not tools:
        raise ValueError("run_tools needs at least one tool")
    if mode == "auto":
        mode = "native" if getattr(backend, "native_tools", True) else "json"
    if mode == "native":
        return _run_tools_native(backend, messages, tools, max_rounds, require_tool, max_tokens, **kwargs)
    if mode == "json":
        return _run_tools_json(backend, messages, tools, max_rounds, require_tool, max_tokens, **kwargs)
    raise ValueError(f"unknown tool mode {mode!r}; use auto, native or json")


# --- the course's tools -----------------------------------------------------------------
class FeeArgs(BaseModel):
    price: float = Field(gt=0, le=2000, description="the item's sale price in US dollars")
    relay_plus: bool = Field(default=False, description="whether the seller is a Relay Plus member")


def seller_earnings(price: float, relay_plus: bool = False) -> dict:
    """Relay Market's fee rules (course_data/knowledge_base/policy-selling-fees.md) as a function."""
    rate = 0.08 if relay_plus else 0.10
    selling_fee = max(1.0, round(price * rate, 2))
    processing_fee = round(price * 0.029 + 0.50, 2)
    return {
        "price": round(price, 2),
        "selling_fee": selling_fee,
        "processing_fee": processing_fee,
        "seller_earns": round(price - selling_fee - processing_fee, 2),
    }


def fee_tool() -> Tool:
    return Tool(
        name="seller_earnings",
        description="How much a Relay Market seller earns after fees for a given sale price.",
        parameters=FeeArgs,
        fn=lambda args: seller_earnings(args.price, args.relay_plus),
    )


class PriceLookupArgs(BaseModel):
    query: str = Field(min_length=2, description="words to look for in listing titles, e.g. 'nike air max'")


def _listings():
    import pandas as pd

    from . import config
    from .models import package_dir

    global _LISTINGS
    if _LISTINGS is None:
        path = package_dir(config.MERCARI) / config.MERCARI.file
        frame = pd.read_parquet(path, columns=["name", "price", "category_name"])
        frame = frame[(frame["price"] > 0) & frame["name"].notna()]
        top = frame["category_name"].fillna("Other").str.split("/").str[0]
        _LISTINGS = frame.assign(lower=frame["name"].str.lower(), category=top).reset_index(drop=True)
    return _LISTINGS


_LISTINGS = None


def price_lookup(query: str, limit: int = 3) -> dict:
    """Prices of past listings whose titles contain every word of `query`."""
    words = [w for w in query.lower().split() if w]
    frame = _listings()
    mask = None
    for word in words:
        hit = frame["lower"].str.contains(word, regex=False)
        mask = hit if mask is None else mask & hit
    matches = frame[mask] if mask is not None else frame.iloc[:0]
    if matches.empty:
        return {"query": query, "matches": 0}
    prices = matches["price"]
    return {
        "query": query,
        "matches": int(len(matches)),
        "median_price": round(float(prices.median()), 2),
        "min_price": round(float(prices.min()), 2),
        "max_price": round(float(prices.max()), 2),
        "examples": matches["name"].head(limit).tolist(),
    }


def price_lookup_tool() -> Tool:
    return Tool(
        name="price_lookup",
        description="Median, min and max sale price of past marketplace listings whose titles contain the query words.",
        parameters=PriceLookupArgs,
        fn=lambda args: price_lookup(args.query),
    )


# --- listings for few-shot classification (notebook 04 writes the prompts and the loop) ---
CATEGORIES = (
    "Women", "Men", "Electronics", "Kids", "Home", "Beauty",
    "Vintage & Collectibles", "Sports & Outdoors", "Handmade", "Other",
)  # fmt: skip


def sample_listings(n: int, seed: int = 42, exclude: Sequence[str] = ()) -> list[dict]:
    """`n` random Mercari listings (title, top-level category, price), reproducible by seed."""
    frame = _listings()
    frame = frame[~frame["name"].isin(list(exclude))]
    rows = frame.sample(n=n, random_state=seed)
    return [{"title": r.name, "category": r.category, "price": float(r.price)} for r in rows.itertuples()]


def _whole_word(name: str) -> re.Pattern:
    return re.compile(r"(?<![a-z])" + re.escape(name.lower()) + r"(?![a-z])")


_CATEGORY_PATTERNS = {c: _whole_word(c) for c in CATEGORIES}


def parse_category(reply: str) -> str | None:
    """The category a reply names as a whole word (the earliest mention wins), or None.

    Whole words only, so a reply that echoes the title does not count as an answer by
    accident: "Mother's day mug" names no category, "Women's jeans" names Women, not Men.
    """
    text = reply.lower()
    found = [(m.start(), c) for c, pattern in _CATEGORY_PATTERNS.items() if (m := pattern.search(text))]
    return min(found)[1] if found else None
