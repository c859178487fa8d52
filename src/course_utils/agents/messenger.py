"""The agents' messenger (notebook 16): every alert to a JSONL outbox; to ntfy or Pushover only when configured."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

NTFY_ENV = ("NTFY_TOPIC", "NTFY_SERVER")  # topic (a secret of sorts: anyone who knows it can read), server URL
PUSHOVER_ENV = ("PUSHOVER_USER", "PUSHOVER_TOKEN")


def _http_post(url: str, data: bytes, headers: dict) -> int:
    import urllib.request

    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


class Messenger:
    """Sends alerts. Every alert goes to the outbox (one JSON line each, flushed to disk); to ntfy when
    NTFY_TOPIC is set and to Pushover when PUSHOVER_USER and PUSHOVER_TOKEN are set; nowhere else.

    `post(url, data, headers)` does the HTTP request (tests pass a recorder). Secrets are read once and
    only ever shown masked."""

    def __init__(self, outbox: str | os.PathLike, env: dict | None = None, post: Callable = _http_post):
        from ..core import secrets

        self.outbox = Path(outbox)
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        if env is None:
            secrets.load_dotenv_once()
            env = os.environ
        self._ntfy_topic = (env.get("NTFY_TOPIC") or "").strip() or None
        self._ntfy_server = (env.get("NTFY_SERVER") or "https://ntfy.sh").strip().rstrip("/")
        self._pushover = tuple((env.get(name) or "").strip() for name in PUSHOVER_ENV)
        self._post = post
        self.sent: list[dict] = []

    @property
    def channels(self) -> list[str]:
        found = ["outbox"]
        if self._ntfy_topic:
            found.append("ntfy")
        if all(self._pushover):
            found.append("pushover")
        return found

    def describe(self) -> str:
        """Where alerts go, safe to print: topics and tokens masked."""
        from ..core.secrets import mask

        parts = [f"outbox {self.outbox}"]
        if self._ntfy_topic:
            parts.append(f"ntfy {self._ntfy_server}/{mask(self._ntfy_topic)}")
        if all(self._pushover):
            parts.append(f"pushover user {mask(self._pushover[0])} token {mask(self._pushover[1])}")
        return "; ".join(parts)

    def send(self, title: str, message: str, data: dict | None = None) -> dict:
        """Deliver one alert; returns {channel: "ok" or the error} (an unreachable service is reported, not raised)."""
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "title": title, "message": message, **(data or {})}
        with open(self.outbox, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        status = {"outbox": "ok"}
        if self._ntfy_topic:
            status["ntfy"] = self._deliver(
                f"{self._ntfy_server}/{self._ntfy_topic}", message.encode(), {"Title": title.encode("ascii", "replace").decode()}
            )
        if all(self._pushover):
            from urllib.parse import urlencode

            body = urlencode({"token": self._pushover[1], "user": self._pushover[0], "title": title, "message": message})
            status["pushover"] = self._deliver(
                "https://api.pushover.net/1/messages.json", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
            )
        self.sent.append({**record, "status": status})
        return status

    def _deliver(self, url: str, data: bytes, headers: dict) -> str:
        try:
            code = self._post(url, data, headers)
        except Exception as exc:  # a push service that is down must not stop the planner
            return f"failed: {type(exc).__name__}"
        return "ok" if 200 <= int(code) < 300 else f"failed: HTTP {code}"

    def read_outbox(self) -> list[dict]:
        if not self.outbox.is_file():
            return []
        return [json.loads(line) for line in self.outbox.read_text(encoding="utf-8").splitlines() if line.strip()]
