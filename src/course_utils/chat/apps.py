"""Serving a Gradio app from a notebook: on 127.0.0.1 only, without blocking, and stopped cleanly.

Notebook 04 writes its chat app out (a `gr.ChatInterface` over a streamed reply) and launches it with
the same arguments as `launch` below; notebook 05's RAG app and the tests use `launch` and `close`.
No public share link is asked for unless the caller passes `share=True` explicitly. `launch()` returns
at once (`prevent_thread_lock=True`) and `close()` stops the server, so a notebook run headless ends
cleanly.
"""

from __future__ import annotations


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
