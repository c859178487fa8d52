"""Scripted OpenAI-style servers for the tests: real sockets on 127.0.0.1, driven by the real `openai` client.

A test subclasses `JSONHandler` (its do_POST/do_GET answer with `send_json`) and serves it with
`LocalServer`, which listens on a free port in a background thread.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers["Content-Length"]))

    def send_json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def chat_completion(model: str, message: dict | str, reply_id: str = "x") -> dict:
    """The body of a non-streaming chat completion whose one choice is `message`."""
    message = {"role": "assistant", "content": message} if isinstance(message, str) else message
    return {"id": reply_id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


class LocalServer:
    """`handler` served on a free port of 127.0.0.1 (started at once unless start=False)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], start: bool = True):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        if start:
            self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
