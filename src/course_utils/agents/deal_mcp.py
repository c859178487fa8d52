"""The deal agents' tools as an MCP server (notebook 16): scan the feed, estimate a value, notify, recall.

    python -m course_utils.agents.deal_mcp --feed URL --memory PATH --outbox PATH [--pricer ensemble]
                                    [--llm-url URL --llm-model NAME]

It speaks MCP over stdio (the client starts it as a subprocess and talks through its stdin and stdout),
so any MCP client can use the tools: the OpenAI Agents SDK's `MCPServerStdio`, the `mcp` SDK's own
client, an IDE. It is written with the `mcp` SDK's high-level server (`FastMCP` in mcp 1.x, renamed
`MCPServer` in 2.x): each tool is a typed Python function, and its signature and docstring become the
tool's JSON schema and description.

Every tool answers with a JSON object; a failure is `{"error": ...}` the model can read, never a crash.
Estimates are cached in the memory file, so a value the notebook already computed costs a lookup here.
With `--llm-url`, `scan_deals` lets the chat model pick the most promising listings (the scanner);
without it, it returns the new listings as they come.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import deals


def build_server(feed_url: str, memory_path: str, outbox: str, pricer: str = "ensemble",
                 llm_url: str | None = None, llm_model: str | None = None, picks: int = 3, run_id: str | None = None,
                 threshold: float = deals.DEAL_DISCOUNT):  # fmt: skip
    """The MCP server object with its four tools (not started). `threshold` is the estimated discount at which
    a listing deserves an alert: `estimate_value` says whether it reaches it, and `notify` refuses one that does not."""
    try:
        from mcp.server.mcpserver import MCPServer  # mcp >= 2
    except ImportError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP as MCPServer

    memory = deals.DealMemory(memory_path)
    messenger = deals.Messenger(outbox)
    bank = deals.PricerBank()
    # WARNING: the SDK logs every request at INFO on stderr, which a notebook would show
    server = MCPServer("deal-tools", instructions="Tools to find, price and announce second-hand deals.", log_level="WARNING")

    def backend():
        from openai import OpenAI

        from ..chat.llm import ChatBackend

        return ChatBackend(OpenAI(base_url=llm_url, api_key="local", max_retries=0), llm_model, "local", llm_url)

    def _next_step() -> str:
        waiting = memory.query("SELECT COUNT(*) AS n FROM entries WHERE status = 'new'")[0]["n"]
        return "Go on with the next listing." if waiting else "Every listing is handled: reply DONE."

    @server.tool()
    def scan_deals() -> str:
        """Read the deal feed and return new listings worth pricing (id, title, asking price)."""
        try:
            entries = deals.parse_feed(feed_url)
        except Exception as exc:
            return json.dumps({"error": f"could not read the feed: {exc}"})
        done = memory.decided()
        fresh = [e for e in entries if e.entry_id not in done]
        memory.remember(fresh, run_id)
        if llm_url and fresh:
            try:
                chosen = deals.select_deals(backend(), fresh, picks)
            except Exception as exc:
                return json.dumps({"error": f"the scanner failed: {type(exc).__name__}: {exc}"})
            for entry in fresh:  # what the scanner passed over is decided too: it is not offered again
                if entry not in [e for e, _ in chosen]:
                    memory.set_status(entry.entry_id, "skipped", "not picked by the scanner")
            listed = [(e, why) for e, why in chosen]
        else:
            listed = [(e, e.summary(60)) for e in fresh]
        memory.log("scanner", f"{len(fresh)} new of {len(entries)}; offered {len(listed)}", run_id)
        if not listed:
            return json.dumps({"deals": [], "note": "no new listings: reply DONE"})
        return json.dumps({"deals": [{"id": e.entry_id, "title": e.title[:60], "asking_price": e.asking_price, "about": why}
                                     for e, why in listed]})  # fmt: skip

    @server.tool()
    def estimate_value(entry_id: str) -> str:
        """Estimate what a listing from scan_deals is really worth, in dollars."""
        entry = memory.entry(entry_id)
        if entry is None:
            return json.dumps({"error": f"unknown id {entry_id!r}: use an id returned by scan_deals"})
        estimate = memory.estimate(entry_id, pricer)
        if estimate is None:
            try:
                estimate = bank.price(pricer, entry)
            except Exception as exc:
                return json.dumps({"error": f"{pricer} pricer failed: {type(exc).__name__}: {exc}"})
            memory.save_estimate(entry_id, pricer, estimate)
        if memory.query("SELECT status FROM entries WHERE entry_id = ?", (entry_id,))[0]["status"] == "new":
            memory.set_status(entry_id, "priced")
        discount = 1 - entry.asking_price / estimate
        memory.log("pricer", f"{entry_id}: asking ${entry.asking_price:.0f}, worth ${estimate:.0f}", run_id)
        return json.dumps({"id": entry_id, "asking_price": entry.asking_price, "estimate": round(estimate, 2),
                           "discount": f"{discount:.0%}", "alert": bool(discount >= threshold)})  # fmt: skip

    @server.tool()
    def notify(entry_id: str, message: str) -> str:
        """Alert the user about a deal (a listing already priced with estimate_value)."""
        entry = memory.entry(entry_id)
        rows = memory.query("SELECT status FROM entries WHERE entry_id = ?", (entry_id,))
        estimate = memory.estimate(entry_id, pricer) if entry else None
        if rows and rows[0]["status"] == "alerted":
            return json.dumps({"error": f"{entry_id!r} was already announced: do not notify it again. {_next_step()}"})
        if entry is None or estimate is None or rows[0]["status"] != "priced":
            return json.dumps({"error": f"call estimate_value for {entry_id!r} before notifying"})
        if 1 - entry.asking_price / estimate < threshold:
            return json.dumps({"error": f"{entry_id!r} is not a deal (alert is false): do not notify it. {_next_step()}"})
        if not memory.record_alert(entry, estimate, message, run_id):
            return json.dumps({"error": f"{entry_id!r} was already announced: do not notify it again. {_next_step()}"})
        status = messenger.send(f"Deal: {entry.title[:60]}", message, {"entry_id": entry_id, "asking_price": entry.asking_price, "estimate": estimate})
        memory.log("messenger", f"alert {entry_id}: {message[:80]}", run_id)
        return json.dumps({"sent": status})

    @server.tool()
    def recent_deals(limit: int = 5) -> str:
        """The latest deals already announced (from memory)."""
        rows = memory.query("SELECT entry_id, asking_price, estimate, message FROM alerts ORDER BY sent_at DESC LIMIT ?", (int(limit),))
        return json.dumps({"deals": rows})

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", required=True, help="RSS or Atom feed URL")
    parser.add_argument("--memory", required=True, help="the SQLite memory file")
    parser.add_argument("--outbox", required=True, help="the JSONL outbox file")
    parser.add_argument("--pricer", default="ensemble", choices=sorted(deals.PRICERS))
    parser.add_argument("--llm-url", help="OpenAI-compatible base URL for the scanner's chat model")
    parser.add_argument("--llm-model", help="the model name to ask at --llm-url")
    parser.add_argument("--picks", type=int, default=3, help="listings the scanner may pick per scan")
    parser.add_argument("--run-id", help="a label for this run in the memory's log")
    parser.add_argument("--threshold", type=float, default=deals.DEAL_DISCOUNT, help="estimated discount that deserves an alert")
    args = parser.parse_args(argv)
    server = build_server(args.feed, args.memory, args.outbox, args.pricer, args.llm_url, args.llm_model, args.picks, args.run_id, args.threshold)
    print("deal-tools MCP server on stdio", file=sys.stderr)  # stdout carries the protocol: nothing else may go there
    server.run("stdio")


if __name__ == "__main__":
    main()


def agents_stdio_server(params: dict, log_path, **kwargs):
    """The OpenAI Agents SDK's `MCPServerStdio` for `params`, with the server's stderr written to `log_path`.

    Both MCP clients hand the server process the caller's `sys.stderr` by default. In a notebook kernel that is
    a stream with no file descriptor behind it, and starting the process fails ("fileno"); a log file is a real
    file, and keeps what the server printed for reading afterwards.
    """
    from agents.mcp import MCPServerStdio
    from mcp.client.stdio import stdio_client

    class LoggedStdioServer(MCPServerStdio):
        def create_streams(self):
            return stdio_client(self.params, errlog=errlog)

    errlog = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (open for the server's whole life)
    return LoggedStdioServer(params=params, **kwargs)
