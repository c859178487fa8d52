"""The deal agents' parts (notebook 16): feed, memory, messenger, the MCP server and the scoring."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from course_utils.agents import deals

ENTRIES = [
    deals.DealEntry("deal-a", "Nike Air Max 90 & laces", 25.0, "Worn <b>twice</b>", ("Men", "Shoes"), "Nike", "Like new"),
    deals.DealEntry("deal-b", "Desk lamp", 12.5, "", (), None, None),
    deals.DealEntry("deal-c", "Lego Star Wars set", 80.0, "Complete, with box", ("Kids", "Toys"), "LEGO", "Good"),
]


@pytest.fixture
def feed():
    server = deals.FeedServer(ENTRIES)
    try:
        yield server
    finally:
        server.close()


def test_feed_round_trip_over_http_keeps_every_field(feed):
    assert feed.url.startswith("http://127.0.0.1:")
    got = deals.parse_feed(feed.url)
    assert [e.entry_id for e in got] == ["deal-a", "deal-b", "deal-c"]
    first = got[0]
    assert (first.title, first.asking_price, first.brand, first.condition) == ("Nike Air Max 90 & laces", 25.0, "Nike", "Like new")
    assert first.categories == ("Men", "Shoes")
    assert feed.requests == 1
    feed.publish(ENTRIES[1:])  # the feed moves on
    assert [e.entry_id for e in deals.parse_feed(feed.url)] == ["deal-b", "deal-c"]


def test_feed_price_from_the_title_when_a_feed_has_no_price_element(tmp_path):
    atom = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:x</id><updated>2024-01-01T00:00:00Z</updated>
<entry><title>Camera bag - $1,299.50</title><id>urn:1</id><updated>2024-01-01T00:00:00Z</updated><summary>ok</summary></entry>
<entry><title>No price here</title><id>urn:2</id><updated>2024-01-01T00:00:00Z</updated></entry></feed>"""
    got = deals.parse_feed(atom)
    assert [(e.entry_id, e.title, e.asking_price) for e in got] == [("urn:1", "Camera bag", 1299.5)]


def test_asking_prices_are_seeded_and_truth_is_kept_apart():
    from course_utils.pricing.items import Item

    items = [Item(id=f"m-{i}", title=f"thing {i}", price=10.0 + i) for i in range(200)]
    first, truth = deals.make_entries(items, seed=7)
    again, _ = deals.make_entries(items, seed=7)
    assert [e.asking_price for e in first] == [e.asking_price for e in again]
    assert truth == {f"deal-m-{i}": 10.0 + i for i in range(200)}
    ratios = [e.asking_price / truth[e.entry_id] for e in first]
    assert 0.45 < min(ratios) and max(ratios) < 1.45
    assert 0.2 < sum(deals.is_deal(e.asking_price, truth[e.entry_id]) for e in first) / len(first) < 0.6


def test_memory_deduplicates_and_survives_a_restart(tmp_path):
    path = tmp_path / "memory.sqlite"
    memory = deals.DealMemory(path)
    assert memory.remember(ENTRIES) == 3
    assert memory.remember(ENTRIES) == 0  # the same feed ids again: nothing new
    memory.save_estimate("deal-a", "ensemble", 50.0)
    assert memory.decided() == set()  # a cached estimate is not a decision
    assert memory.record_alert(ENTRIES[0], 50.0, "half price") is True
    assert memory.record_alert(ENTRIES[0], 50.0, "again") is False  # never announced twice
    del memory

    reopened = deals.DealMemory(path)  # a new kernel opens the same file
    assert reopened.remember(ENTRIES) == 0
    assert reopened.decided() == {"deal-a"}
    assert reopened.estimate("deal-a", "ensemble") == 50.0
    assert reopened.entry("deal-c") == ENTRIES[2]
    table = reopened.deals_table()
    assert table.set_index("entry_id").loc["deal-a", "discount"] == pytest.approx(0.5)


def test_an_interrupted_write_leaves_no_partial_rows(tmp_path):
    memory = deals.DealMemory(tmp_path / "memory.sqlite")

    def interrupted():  # Ctrl-C (or a dying kernel) after the first entry was written
        yield ENTRIES[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        memory.remember(interrupted())
    assert memory.query("SELECT COUNT(*) AS n FROM entries")[0]["n"] == 0  # the first row was rolled back too
    assert memory.remember(ENTRIES) == 3  # and the next run starts clean


def test_messenger_writes_the_outbox_and_sends_nothing_without_configuration(tmp_path):
    posted = []
    messenger = deals.Messenger(tmp_path / "outbox.jsonl", env={}, post=lambda *args: posted.append(args) or 200)
    status = messenger.send("Deal: lamp", "Desk lamp at $12, worth ~$30", {"entry_id": "deal-b"})
    assert status == {"outbox": "ok"} and messenger.channels == ["outbox"]
    assert posted == []
    assert messenger.read_outbox()[0]["entry_id"] == "deal-b"


def test_messenger_sends_where_configured_and_masks_secrets(tmp_path):
    posted = []
    env = {"NTFY_TOPIC": "topic-" + "s" * 30, "PUSHOVER_USER": "u" * 30, "PUSHOVER_TOKEN": "tok-" + "t" * 30}
    messenger = deals.Messenger(tmp_path / "outbox.jsonl", env=env, post=lambda url, data, headers: posted.append((url, data)) or 200)
    status = messenger.send("Deal", "cheap")
    assert status == {"outbox": "ok", "ntfy": "ok", "pushover": "ok"}
    assert posted[0] == ("https://ntfy.sh/" + env["NTFY_TOPIC"], b"cheap")
    assert posted[1][0] == "https://api.pushover.net/1/messages.json" and b"tok-" in posted[1][1]
    shown = messenger.describe()
    assert all(secret not in shown for secret in env.values())

    failing = deals.Messenger(tmp_path / "outbox.jsonl", env=env, post=lambda *a: (_ for _ in ()).throw(OSError("down")))
    assert failing.send("Deal", "x")["ntfy"] == "failed: OSError"  # reported, not raised; the outbox still has it
    assert len(failing.read_outbox()) == 2


def test_scoring_on_a_hand_made_case():
    truth = {"a": 100.0, "b": 100.0, "c": 100.0, "d": 100.0}
    entries = [deals.DealEntry("a", "a", 50.0), deals.DealEntry("b", "b", 75.0), deals.DealEntry("c", "c", 80.0), deals.DealEntry("d", "d", 130.0)]
    # true deals at a 25% discount: a (50) and b (75, exactly on the line); c and d are not
    scores = deals.score_alerts({"a", "c"}, entries, truth)
    assert scores == {"entries": 4, "true deals": 2, "alerts": 2, "correct alerts": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert deals.score_alerts({"a"}, entries, truth)["f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    none = deals.score_alerts(set(), entries, truth)
    assert none["precision"] is None and none["recall"] == 0.0 and none["f1"] == 0.0
    no_deals = deals.score_alerts({"c"}, entries[2:], truth)
    assert no_deals["recall"] is None and no_deals["precision"] == 0.0 and no_deals["f1"] == 0.0
    with pytest.raises(ValueError):
        deals.score_alerts({"zzz"}, entries, truth)


def test_selection_schema_only_allows_listings_on_the_page():
    from pydantic import ValidationError

    schema = deals.selection_schema(count=3, picks=2)
    ok = schema.model_validate({"deals": [{"number": 3, "description": "lego set"}]})
    assert ok.deals[0].number == 3
    for bad in ({"deals": [{"number": 4, "description": "x"}]}, {"deals": [{"number": 1, "description": "x"}] * 3}):
        with pytest.raises(ValidationError):
            schema.model_validate(bad)


def test_a_missing_artefact_names_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    bank = deals.PricerBank()
    with pytest.raises(deals.MissingArtifactError, match="13_rag_pricer"):
        bank.pricer("rag")
    with pytest.raises(ValueError, match="unknown pricer"):
        bank.pricer("oracle")


def _server_params(tmp_path, feed_url):
    return {"command": sys.executable,
            "args": ["-m", "course_utils.agents.deal_mcp", "--feed", feed_url, "--memory", str(tmp_path / "memory.sqlite"),
                     "--outbox", str(tmp_path / "outbox.jsonl"), "--pricer", "ensemble"],
            "env": {**os.environ, "COURSE_RESULTS": str(tmp_path / "results")}}  # fmt: skip


async def _mcp_session(tmp_path, feed_url):
    from mcp import ClientSession

    from course_utils.agents import deal_mcp

    log = tmp_path / "logs" / "mcp-server.log"
    async with deal_mcp.logged_stdio_client(_server_params(tmp_path, feed_url), log) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        names = sorted(tool.name for tool in listed.tools)
        schemas = {t.name: getattr(t, "input_schema", None) or t.inputSchema for t in listed.tools}  # mcp 2 / mcp 1
        calls = {}
        for name, arguments in (
            ("scan_deals", {}),
            ("estimate_value", {"entry_ids": ["deal-a"]}),  # its estimate is in memory already (seeded below)
            ("notify", {"entry_ids": ["deal-b"]}),  # never priced: refused
            ("notify", {"entry_ids": ["deal-a"]}),
            ("notify", {"entry_ids": ["deal-a"]}),  # once more: refused
            ("estimate_value", {"entry_ids": ["deal-b", "deal-zzz"]}),  # deal-b cached at $13 for $12.50: no deal; deal-zzz unknown
            ("notify", {"entry_ids": ["deal-b"]}),  # not a deal: refused
            ("notify", {"entry_ids": []}),  # no deal on the page: nothing to send, nothing wrong
            ("recent_deals", {"limit": 3}),
            ("estimate_value", {"entry_ids": ["deal-c"]}),  # not cached: the ensemble needs notebooks 08-14
        ):
            result = await session.call_tool(name, arguments)
            calls.setdefault(name, []).append(json.loads(result.content[0].text))
        bad = await session.call_tool("notify", {"message": "free text instead of ids"})  # does not fit the schema
    return names, schemas, calls, bad, log


@pytest.mark.slow
def test_mcp_server_lists_and_calls_its_tools(tmp_path, feed):
    memory = deals.DealMemory(tmp_path / "memory.sqlite")
    memory.remember(ENTRIES[:1])
    memory.save_estimate("deal-a", "ensemble", 50.0)  # as if the planner had priced it
    memory.set_status("deal-a", "priced")
    memory.save_estimate("deal-b", "ensemble", 13.0)
    names, schemas, calls, bad, log = asyncio.run(_mcp_session(tmp_path, feed.url))

    assert names == ["estimate_value", "notify", "recent_deals", "scan_deals"]
    for tool in ("estimate_value", "notify"):  # ids, never free text
        assert schemas[tool]["required"] == ["entry_ids"] and schemas[tool]["properties"]["entry_ids"]["type"] == "array"
    scan = calls["scan_deals"][0]
    assert [d["id"] for d in scan["listings"]] == ["deal-b", "deal-c"]  # deal-a was decided (priced) before: not offered again
    assert '["deal-b", "deal-c"]' in scan["next"]  # what to call next, with the ids to pass
    first = calls["estimate_value"][0]
    assert first["estimates"] == [{"id": "deal-a", "asking_price": 25.0, "estimate": 50.0, "discount": "50%", "deal": True}]
    assert first["deals"] == ["deal-a"] and '["deal-a"]' in first["next"] and "error" not in first
    assert "not priced yet" in calls["notify"][0]["error"] and calls["notify"][0]["sent"] == []  # deal-b was never priced
    assert calls["notify"][1]["sent"] == ["deal-a"] and "error" not in calls["notify"][1]
    assert "already announced" in calls["notify"][2]["error"] and calls["notify"][2]["sent"] == []
    mixed = calls["estimate_value"][1]
    assert [r["deal"] for r in mixed["estimates"]] == [False] and "deal-zzz" in mixed["error"] and "deal-c" in mixed["error"]
    assert "not a deal" in calls["notify"][3]["error"]  # below the alert threshold: refused
    assert calls["notify"][4] == {"sent": [], "next": "Done: reply DONE."}
    assert calls["recent_deals"][0]["deals"][0]["entry_id"] == "deal-a"
    assert "notebooks/" in calls["estimate_value"][2]["error"]  # names the notebook to run
    assert getattr(bad, "is_error", None) or getattr(bad, "isError", False)  # mcp 2 / mcp 1: arguments that do not fit are refused
    outbox = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [o["entry_id"] for o in outbox] == ["deal-a"]
    assert "Nike Air Max 90" in outbox[0]["message"] and "$25" in outbox[0]["message"]  # the tool wrote the alert
    assert log.is_file()  # the server's stderr went to the log file


@pytest.mark.slow
def test_the_agents_sdk_reaches_the_server_through_the_logged_stdio_client(tmp_path, feed):
    from course_utils.agents import deal_mcp

    async def listed():
        async with deal_mcp.agents_stdio_server(_server_params(tmp_path, feed.url), tmp_path / "sdk.log", name="deal-tools") as server:
            return sorted(tool.name for tool in await server.list_tools())

    assert asyncio.run(listed()) == ["estimate_value", "notify", "recent_deals", "scan_deals"]
    assert "deal-tools MCP server on stdio" in (tmp_path / "sdk.log").read_text()


def test_the_notebooks_tool_call_score_counts_only_answers_without_an_error():
    """Notebook 16 scores each agent tool call: a call succeeded when the tool answered a JSON object with no
    "error" key; a refusal, and an error text from the SDK or the MCP layer, are failures."""
    from types import SimpleNamespace

    from agents import Agent
    from agents.items import ToolCallItem, ToolCallOutputItem
    from openai.types.responses import ResponseFunctionToolCall

    from notebook_cells import cell_namespace

    cell = cell_namespace("16_deal_agents.ipynb", "def tool_calls(", profile=SimpleNamespace(size=lambda name: 6), backend=SimpleNamespace(
        model="m", client=SimpleNamespace(base_url="http://127.0.0.1:9/v1", api_key="local")))
    agent = Agent(name="test")
    answers = {"1": '{"listings": [], "next": "reply DONE"}', "2": '{"sent": ["a"], "error": "b is not a deal"}',
               "3": "Error executing tool notify: 1 validation error", "4": {"type": "text", "text": '{"sent": []}'}}  # fmt: skip
    items = []
    for call_id, output in answers.items():
        items.append(ToolCallItem(agent=agent, raw_item=ResponseFunctionToolCall(arguments="{}", call_id=call_id, name="notify", type="function_call")))
        items.append(ToolCallOutputItem(agent=agent, raw_item={"call_id": call_id, "output": str(output), "type": "function_call_output"}, output=output))
    rows = cell["tool_calls"](SimpleNamespace(new_items=items))
    assert [r["succeeded"] for r in rows] == [True, False, False, True]
    assert all(r["well-formed"] for r in rows)


def test_mcp_module_runs_as_a_script():
    done = subprocess.run([sys.executable, "-m", "course_utils.agents.deal_mcp", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--feed" in done.stdout


class _ScriptedBackend:
    """Answers every chat completion with the same text, like a model that always picks listings 3 and 1."""

    kind, model = "local", "scripted"

    def __init__(self, reply: str):
        from types import SimpleNamespace

        message = SimpleNamespace(content=reply, refusal=None)
        response = SimpleNamespace(choices=[SimpleNamespace(message=message)])
        self.requests = []
        self.client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=lambda **kw: self.requests.append(kw) or response)))


def test_the_notebooks_scanner_agrees_with_the_package_copy(tmp_path, feed):
    from notebook_cells import cell_namespace

    cell = cell_namespace("16_deal_agents.ipynb", "def selection_schema(", deals=deals, __name__="notebook16")
    assert cell["selection_schema"](5, 3).model_json_schema() == deals.selection_schema(5, 3).model_json_schema()

    reply = json.dumps({"deals": [{"number": 3, "description": "LEGO set"}, {"number": 1, "description": "Nike shoes"},
                                  {"number": 3, "description": "again"}]})  # fmt: skip
    notebook_backend, package_backend = _ScriptedBackend(reply), _ScriptedBackend(reply)
    memory = deals.DealMemory(tmp_path / "memory.sqlite")
    picked = cell["scan"](notebook_backend, memory, feed.url, picks=3)
    expected = deals.select_deals(package_backend, deals.parse_feed(feed.url), picks=3)
    assert picked == expected
    assert [(e.entry_id, about) for e, about in picked] == [("deal-c", "LEGO set"), ("deal-a", "Nike shoes")]  # a repeat counts once
    assert notebook_backend.requests[0]["messages"] == package_backend.requests[0]["messages"]
    assert notebook_backend.requests[0]["response_format"] == package_backend.requests[0]["response_format"]
    assert memory.decided() == {"deal-b"}  # the listing not picked is skipped; the picks wait for the planner
    second = _ScriptedBackend(json.dumps({"deals": [{"number": 2, "description": "LEGO set"}]}))
    assert cell["scan"](second, memory, feed.url, picks=3)[0][0].entry_id == "deal-c"  # now listing 2 of 2
    assert "Desk lamp" not in second.requests[0]["messages"][1]["content"]  # deal-b is not offered again
