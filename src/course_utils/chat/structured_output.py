"""Structured output: a pydantic model is the schema, and the reply is validated against it.

One request builder, `response_format_for`, and the reason each server gets what it gets:

- OpenAI: `json_schema` with `strict: true`. Strict mode is OpenAI's guarantee that the
  reply matches the schema, and it accepts only a subset of JSON schema: every object
  closed (`additionalProperties: false`), every property required, no numeric bounds.
  `strict_schema` rewrites pydantic's schema into that subset; pydantic still checks the
  bounds when the reply is validated.
- llama.cpp (the local server): `json_object` with the full `schema`, which the server
  turns into a grammar that constrains sampling, so even a small model writes valid JSON.
  Grammars take any schema, so nothing is dropped.
- Any other OpenAI-compatible server (vLLM, Ollama, ...): `json_schema` without `strict`,
  since those servers constrain decoding by the schema themselves and not all of them
  accept OpenAI's strict flag.

Whatever comes back is parsed and validated with pydantic; an invalid reply is sent back
to the model with the validation error and retried, and after the last retry
`StructuredOutputError` is raised with every attempt. Nothing invalid is returned.
"""

from __future__ import annotations

import copy

from pydantic import BaseModel, ValidationError

from .conversation import assistant, user

_STRICT_DROPPED = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "default")


class StructuredOutputError(ValueError):
    """The model did not produce valid output for the schema, even after retries."""

    def __init__(self, message: str, attempts: list[tuple[str, str]]):
        super().__init__(message)
        self.attempts = attempts  # (raw reply, error) for each try


def strict_schema(schema: dict) -> dict:
    """`schema` in the form OpenAI's strict mode takes: objects closed, all properties required, no bounds."""
    schema = copy.deepcopy(schema)

    def tighten(node):
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node.get("properties", {}))
            for key in _STRICT_DROPPED:
                node.pop(key, None)
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


def response_format_for(schema: type[BaseModel], kind: str) -> dict:
    """The `response_format` that asks this kind of server (openai, local, base_url) for JSON matching `schema`."""
    json_schema = schema.model_json_schema()
    if kind == "local":  # llama.cpp: schema -> grammar, sampling is constrained
        return {"type": "json_object", "schema": json_schema}
    if kind == "openai":
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": strict_schema(json_schema), "strict": True}}
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
    response = backend.client.chat.completions.create(
        model=backend.model, messages=messages, response_format=response_format_for(schema, backend.kind), **kwargs
    )
    message = response.choices[0].message
    if getattr(message, "refusal", None):  # OpenAI says so when it will not answer
        raise ValueError(f"the model refused: {message.refusal}")
    return message.content or ""


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
