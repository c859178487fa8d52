"""chat.apps: a Gradio app served on 127.0.0.1 only, without blocking, and really stopped by close()."""

from __future__ import annotations

import socket
import urllib.request
from urllib.parse import urlparse

import pytest

from needs import need_module


@pytest.mark.slow
def test_launch_serves_on_loopback_and_close_stops_it():
    need_module("gradio", "gradio is not installed")
    import gradio as gr

    from course_utils.chat import apps

    with gr.Blocks() as app:
        gr.Markdown("hello from the course")
    url = apps.launch(app)  # returns at once: a notebook cell is not blocked
    try:
        parsed = urlparse(url)
        assert parsed.hostname == "127.0.0.1" and parsed.port
        assert app.share_url is None  # no public link unless asked for
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "gradio" in response.read().decode("utf-8", "replace").lower()
    finally:
        apps.close(app)
    with socket.socket() as probe:
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.1", parsed.port)) != 0  # nothing listens any more
