"""Talking to a chat model: messages, conversations, few-shot prompts and streaming.

Everything goes through `course_utils.chat.llm.get_backend()`: the real `openai` client,
pointed at OpenAI, at any OpenAI-compatible server, or (by default) at the embedded
llama.cpp server running the profile's local stand-in for a frontier model. Chat models
are stateless: every request carries the whole conversation.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence


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
