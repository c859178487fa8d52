"""Tool calling: the model asks for a function, the code runs it, the result goes back.

`run_tools()` keeps calling tools until the model answers. With OpenAI (and servers that
parse tool calls, such as llama-server with --jinja) it uses native tool calls. Where a
server returns tool calls as text (llama-cpp-python's server without a function-calling
chat format), each turn is a JSON-schema constrained *decision* instead:
`{"tool": ..., "arguments": {...}}` or `{"answer": ...}`. A model that answers without
calling a tool is recorded as such (`ToolRun.tool_called`), `require_tool=True`
constrains the first turn to a tool call, and repeated identical calls and the round
limit end in a constrained answer, so the loop always terminates. Notebook 04 writes the
native loop out by hand; notebook 16 hands the loop to an agent library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ValidationError

from .conversation import assistant, system, user


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
