"""The deal agents' tools as an MCP server (notebook 16): scan the feed, estimate values, notify, recall.

    python -m course_utils.agents.deal_mcp --feed URL --memory PATH --outbox PATH [--pricer ensemble]
                                    [--llm-url URL --llm-model NAME]

It speaks MCP over stdio (the client starts it as a subprocess and talks through its stdin and stdout),
so any MCP client can use the tools: the OpenAI Agents SDK's `MCPServerStdio`, the `mcp` SDK's own
client, an IDE. It is written with the `mcp` SDK's high-level server (`FastMCP` in mcp 1.x, renamed
`MCPServer` in 2.x): each tool is a typed Python function, and its signature and docstring become the
tool's JSON schema and description.

The tools are shaped for a small model. Arguments are ids the previous tool returned, never free text:
`estimate_value` takes the ids `scan_deals` listed, `notify` the ids `estimate_value` marked as deals (the
alert's text is written here, from memory). Every answer is a JSON object that ends with what to do next;
a failure is `{"error": ...}` that says what was wrong and which ids would work, never a crash.
Estimates are cached in the memory file, so a value the notebook already computed costs a lookup here.
With `--llm-url`, `scan_deals` lets the chat model pick the most promising listings (the scanner);
without it, it returns the new listings as they come.

`logged_stdio_client` and `agents_stdio_server` are the client side: they start this server with its
stderr in a log file (a notebook kernel's stderr is no file a subprocess can write to).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from . import deals


def build_server(feed_url: str, memory_path: str, outbox: str, pricer: str = "ensemble",
                 llm_url: str | None = None, llm_model: str | None = None, picks: int = 3, run_id: str | None = None,
                 threshold: float = deals.DEAL_DISCOUNT):  # fmt: skip
    """The MCP server object with its four tools (not started). `threshold` is the estimated discount at which
    a listing deserves an alert: `estimate_value` says whether each listing reaches it, and `notify` refuses one
    that does not."""
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

    def status(entry_id: str) -> str | None:
        rows = memory.query("SELECT status FROM entries WHERE entry_id = ?", (entry_id,))
        return rows[0]["status"] if rows else None

    def as_ids(entry_ids) -> list[str]:
        """The ids in their order, each once, without stray spaces."""
        return list(dict.fromkeys(i.strip() for i in entry_ids if i.strip()))

    def waiting() -> list[str]:
        """Ids scanned but not yet priced (offered by a scan, not yet decided)."""
        return [r["entry_id"] for r in memory.query("SELECT entry_id FROM entries WHERE status = 'new' ORDER BY first_seen, entry_id")]

    @server.tool()
    def scan_deals() -> str:
        """Read the deal feed and return the new listings worth pricing: id, title, asking price.
        Next, call estimate_value with their ids."""
        try:
            entries = deals.parse_feed(feed_url)
        except Exception as exc:  # noqa: BLE001 (the model reads what went wrong)
            return json.dumps({"error": f"could not read the feed: {exc}. Try scan_deals again later."})
        done = memory.decided()
        fresh = [e for e in entries if e.entry_id not in done]
        memory.remember(fresh, run_id)
        if llm_url and fresh:
            try:
                chosen = deals.select_deals(backend(), fresh, picks)
            except Exception as exc:  # noqa: BLE001
                return json.dumps({"error": f"the scanner failed: {type(exc).__name__}: {exc}"})
            picked = {e.entry_id for e, _ in chosen}
            for entry in fresh:  # what the scanner passed over is decided too: it is not offered again
                if entry.entry_id not in picked:
                    memory.set_status(entry.entry_id, "skipped", "not picked by the scanner")
            listed = chosen
        else:
            listed = [(e, e.summary(60)) for e in fresh]
        memory.log("scanner", f"{len(fresh)} new of {len(entries)}; offered {len(listed)}", run_id)
        if not listed:
            return json.dumps({"listings": [], "next": "No new listings: reply DONE."})
        ids = [e.entry_id for e, _ in listed]
        return json.dumps({"listings": [{"id": e.entry_id, "title": e.title[:60], "asking_price": e.asking_price, "about": why}
                                        for e, why in listed],
                           "next": f"Call estimate_value with entry_ids {json.dumps(ids)}."})  # fmt: skip

    @server.tool()
    def estimate_value(entry_ids: list[str]) -> str:
        """Estimate what listings are really worth, in dollars, and whether each is a deal.
        entry_ids: the ids scan_deals returned."""
        ids = as_ids(entry_ids)
        if not ids:
            return json.dumps({"error": f"no ids given: call estimate_value with entry_ids {json.dumps(waiting())}"})
        unknown = [i for i in ids if memory.entry(i) is None]
        rows = []
        for entry_id in (i for i in ids if i not in unknown):
            entry = memory.entry(entry_id)
            estimate = memory.estimate(entry_id, pricer)
            if estimate is None:
                try:
                    estimate = bank.price(pricer, entry)
                except Exception as exc:  # noqa: BLE001 (a missing artefact names the notebook to run)
                    return json.dumps({"error": f"{pricer} pricer failed: {type(exc).__name__}: {exc}"})
                memory.save_estimate(entry_id, pricer, estimate)
            if status(entry_id) != "alerted":
                memory.set_status(entry_id, "priced")
            discount = 1 - entry.asking_price / estimate
            memory.log("pricer", f"{entry_id}: asking ${entry.asking_price:.0f}, worth ${estimate:.0f}", run_id)
            rows.append({"id": entry_id, "asking_price": entry.asking_price, "estimate": round(estimate, 2),
                         "discount": f"{discount:.0%}", "deal": bool(discount >= threshold)})  # fmt: skip
        found = [r["id"] for r in rows if r["deal"]]
        answer = {"estimates": rows, "deals": found,
                  "next": f"Call notify with entry_ids {json.dumps(found)}." if found else "No deal here: call notify with entry_ids []."}  # fmt: skip
        if unknown:
            answer["error"] = f"unknown ids {json.dumps(unknown)}: use only ids scan_deals returned, such as {json.dumps(waiting()[:5])}"
        return json.dumps(answer)

    @server.tool()
    def notify(entry_ids: list[str]) -> str:
        """Alert the user about the deals: the ids estimate_value marked "deal": true (an empty list when there are none)."""
        ids = as_ids(entry_ids)
        sent, refused = [], []
        for entry_id in ids:
            entry, estimate, now = memory.entry(entry_id), memory.estimate(entry_id, pricer), status(entry_id)
            if entry is None:
                refused.append(f"{entry_id!r} is not a listing scan_deals returned")
            elif now == "alerted":
                refused.append(f"{entry_id!r} was already announced")
            elif estimate is None or now != "priced":
                refused.append(f"{entry_id!r} was not priced yet (call estimate_value for it first)")
            elif 1 - entry.asking_price / estimate < threshold:
                refused.append(f"{entry_id!r} is not a deal (estimate_value said deal: false)")
            else:
                discount = 1 - entry.asking_price / estimate
                message = f"{entry.title[:60]}: ${entry.asking_price:.0f}, worth ~${estimate:.0f} ({discount:.0%} off)"
                if memory.record_alert(entry, estimate, message, run_id):  # recorded first: at most once
                    messenger.send(f"Deal: {entry.title[:60]}", message, {"entry_id": entry_id, "asking_price": entry.asking_price, "estimate": estimate})
                    memory.log("messenger", f"alert {entry_id}: {message[:80]}", run_id)
                    sent.append(entry_id)
                else:
                    refused.append(f"{entry_id!r} was already announced")
        answer = {"sent": sent, "next": "Done: reply DONE."}
        if refused:
            answer["error"] = "; ".join(refused) + ". Nothing was sent for those."
        return json.dumps(answer)

    @server.tool()
    def recent_deals(limit: int = 5) -> str:
        """The latest deals already announced (from memory)."""
        rows = memory.query("SELECT entry_id, asking_price, estimate, message FROM alerts ORDER BY sent_at DESC LIMIT ?", (int(limit),))
        return json.dumps({"deals": rows})

    return server


# --- the client side: starting the server with its stderr in a log file ------------------------------
@contextlib.asynccontextmanager
async def logged_stdio_client(params, log_path: str | os.PathLike):
    """The `mcp` SDK's `stdio_client` for `params` (a dict or `StdioServerParameters`), the server's stderr
    appended to `log_path`.

    Both MCP clients hand the server process the caller's `sys.stderr` by default. In a notebook kernel that is
    a stream with no file descriptor behind it, and starting the process fails ("fileno"); a log file is a real
    file, and keeps what the server printed for reading afterwards.
    """
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    if isinstance(params, dict):
        params = StdioServerParameters(**params)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams


def agents_stdio_server(params: dict, log_path: str | os.PathLike, **kwargs):
    """The OpenAI Agents SDK's `MCPServerStdio` for `params`, its server's stderr in `log_path` (`logged_stdio_client`)."""
    from agents.mcp import MCPServerStdio

    class LoggedStdioServer(MCPServerStdio):
        def create_streams(self):
            return logged_stdio_client(self.params, log_path)

    return LoggedStdioServer(params=params, **kwargs)


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
