"""Gradio 6 apps: a streaming chat with the course backend, and a RAG chat with sources.

Apps listen on 127.0.0.1 only and never ask for a public share link unless the
caller passes `share=True` explicitly. In a notebook, `launch()` returns at once
(`prevent_thread_lock=True`) and `close()` stops the server, so a notebook run
headless ends cleanly.
"""

from __future__ import annotations

from typing import Iterator

from . import chat

DEFAULT_SYSTEM_PROMPT = "You are a friendly, concise assistant for Relay Market, an online resale marketplace."


def chat_app(backend=None, system_prompt: str = DEFAULT_SYSTEM_PROMPT, max_tokens: int = 200, title: str = "Relay Market chat"):
    """A ChatInterface that streams the backend's reply token by token."""
    import gradio as gr

    from .llm import get_backend

    backend = backend or get_backend()

    def respond(message: str, history: list[dict]) -> Iterator[str]:
        messages = [chat.system(system_prompt), *chat.history_to_messages(history), chat.user(message)]
        try:
            yield from chat.stream_text(backend, messages, max_tokens=max_tokens, temperature=0.3)
        except Exception as exc:  # show the reason in the chat instead of a bare "Error"
            yield f"Error from {backend.describe()}: {type(exc).__name__}: {exc}"

    return gr.ChatInterface(
        respond, title=title, description=backend.describe(), flagging_mode="never", api_name="chat"
    )


def rag_answer_stream(rag_chain, message: str) -> Iterator[str]:
    """The RAG chain's streamed answer, or a clear message for bad input."""
    from .rag import QuestionTooLongError

    try:
        yield from rag_chain.stream(message)
    except QuestionTooLongError as exc:
        yield f"Question too long: {exc}"
    except ValueError as exc:
        yield f"Cannot answer: {exc}"


def rag_app(rag_chain, examples: list[str] | None = None, title: str = "Ask Relay Market"):
    """A ChatInterface over a `rag.RagChain`; every answer ends with its sources."""
    import gradio as gr

    def respond(message: str, history: list[dict]) -> Iterator[str]:
        yield from rag_answer_stream(rag_chain, message)

    return gr.ChatInterface(
        respond,
        title=title,
        description="Answers come from the Relay Market knowledge base; the sources are listed under each answer.",
        examples=examples,
        cache_examples=False,
        flagging_mode="never",
        api_name="chat",
    )


def launch(app, port: int | None = None, share: bool = False) -> str:
    """Start the app on 127.0.0.1 without blocking; returns its local URL."""
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        inbrowser=False,
        quiet=True,
        show_error=True,
    )
    return app.local_url


def close(app) -> None:
    """Stop an app started with `launch`."""
    app.close()
