"""The SQLite response cache and retry with backoff, against a real HTTP server.

The retry tests point the real `openai` client at a tiny local server that answers
429 / 500 / a valid chat completion in a scripted order, so the exceptions retried
are the ones the OpenAI SDK really raises.
"""

from __future__ import annotations

import json

import openai
import pytest

from course_utils.chat import cache
from course_utils.chat.llm import ChatBackend
from scripted_http import JSONHandler, LocalServer, chat_completion


class ScriptedServer:
    """Answers POST /v1/chat/completions with the next status in `script` (200 = a reply)."""

    def __init__(self, script: list[int]):
        self.script = list(script)
        self.requests: list[dict] = []
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):
                body = json.loads(self.read_body())
                outer.requests.append(body)
                status = outer.script.pop(0) if outer.script else 200
                if status == 200:
                    self.send_json(chat_completion(body["model"], f"reply {len(outer.requests)}", reply_id="chatcmpl-1"))
                else:
                    payload = {"error": {"message": f"scripted {status}", "type": "test"}}
                    self.send_json(payload, status, headers={"Retry-After": "0"} if status == 429 else None)

        self.server = LocalServer(Handler, start=False)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.close()

    def backend(self, timeout: float = 5.0) -> ChatBackend:
        url = self.server.url
        client = openai.OpenAI(base_url=url, api_key="test", max_retries=0, timeout=timeout)
        return ChatBackend(client, "scripted-model", "base_url", url)


MESSAGES = [{"role": "user", "content": "hello"}]


def test_cache_key_depends_on_model_messages_and_params():
    base = cache.cache_key("m", MESSAGES, {"temperature": 0})
    assert base == cache.cache_key("m", [dict(m) for m in MESSAGES], {"temperature": 0})
    assert base != cache.cache_key("other", MESSAGES, {"temperature": 0})
    assert base != cache.cache_key("m", [{"role": "user", "content": "hello!"}], {"temperature": 0})
    assert base != cache.cache_key("m", MESSAGES, {"temperature": 0.7})


def test_cache_round_trip_persists_on_disk(tmp_path):
    path = tmp_path / "responses.sqlite"
    first = cache.ResponseCache(path)
    key = cache.cache_key("m", MESSAGES)
    assert first.get(key) is None
    first.put(key, "m", {"messages": MESSAGES}, "stored answer")
    reopened = cache.ResponseCache(path)  # a new process would see the same file
    assert reopened.get(key) == "stored answer"
    assert len(reopened) == 1
    reopened.clear()
    assert len(reopened) == 0


def test_backoff_delays_grow_exponentially_and_are_capped():
    assert cache.backoff_delays(6, base=1, factor=2, max_delay=10) == [1, 2, 4, 8, 10, 10]


def test_retry_recovers_from_rate_limit_and_server_busy(tmp_path):
    sleeps: list[float] = []
    with ScriptedServer([429, 429, 200]) as server:
        backend = server.backend()
        text = cache.call_with_retry(backend.chat, MESSAGES, retries=3, base_delay=0.01, sleep=sleeps.append)
    assert text == "reply 3"
    assert len(server.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_retry_gives_up_and_raises_the_real_error():
    sleeps: list[float] = []
    with ScriptedServer([429] * 5) as server:
        with pytest.raises(openai.RateLimitError):
            cache.call_with_retry(server.backend().chat, MESSAGES, retries=2, base_delay=0.01, sleep=sleeps.append)
        assert len(server.requests) == 3  # the first try and two retries
    assert len(sleeps) == 2


def test_non_transient_errors_are_not_retried():
    with ScriptedServer([400, 200]) as server:
        with pytest.raises(openai.BadRequestError):
            cache.call_with_retry(server.backend().chat, MESSAGES, retries=3, sleep=lambda s: None)
        assert len(server.requests) == 1


def test_connection_errors_are_retried():
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=2)
    backend = ChatBackend(client, "none", "base_url", "")
    calls: list[int] = []
    with pytest.raises(openai.APIConnectionError):
        cache.call_with_retry(
            backend.chat, MESSAGES, retries=2, base_delay=0.01, sleep=lambda s: None,
            on_retry=lambda attempt, exc, delay: calls.append(attempt),
        )  # fmt: skip
    assert calls == [1, 2]


def test_cached_chat_calls_the_server_once(tmp_path):
    store = cache.ResponseCache(tmp_path / "c.sqlite")
    with ScriptedServer([429, 200, 200]) as server:
        backend = server.backend()
        first = cache.cached_chat(backend, MESSAGES, cache=store, sleep=lambda s: None, temperature=0)
        second = cache.cached_chat(backend, MESSAGES, cache=store, sleep=lambda s: None, temperature=0)
        other = cache.cached_chat(backend, MESSAGES, cache=store, sleep=lambda s: None, temperature=0.5)
    assert first == second == "reply 2"  # the 429 was retried, then the answer cached
    assert other == "reply 3"  # different params, different key
    assert len(server.requests) == 3
    assert store.stats() == {"entries": 2, "hits": 1, "misses": 2}


def test_notebook_04s_cache_demo_shows_the_model_once_then_the_cache(tmp_path):
    """The cell of notebook 04 that times one request twice through an empty cache."""
    import time
    from types import SimpleNamespace

    import pandas as pd
    from notebook_cells import cell_namespace

    with ScriptedServer([200, 200]) as server:
        ns = cell_namespace("04_chat_tools_ui.ipynb", '"answered by"', backend=server.backend(), time=time, pd=pd,
                            profile=SimpleNamespace(work_dir=tmp_path))
    table = ns["timings"]
    assert list(table.index) == [1, 2] and list(table["answered by"]) == ["model", "cache"]
    assert set(table["reply"]) == {"reply 1"} and len(server.requests) == 1
    assert (table["seconds"] >= 0).all() and (tmp_path / "cache-demo.sqlite").is_file()


def test_the_response_cache_file_can_be_set_apart(tmp_path, monkeypatch):
    """make test points COURSE_RESPONSE_CACHE at a fresh file, so the tests really ask the server."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "course-cache"))
    monkeypatch.delenv(cache.RESPONSE_CACHE_ENV, raising=False)
    assert cache.ResponseCache().path == tmp_path / "course-cache" / "responses.sqlite"
    monkeypatch.setenv(cache.RESPONSE_CACHE_ENV, str(tmp_path / "tests" / "responses.sqlite"))
    assert cache.ResponseCache().path == tmp_path / "tests" / "responses.sqlite" and cache.ResponseCache().path.parent.is_dir()
