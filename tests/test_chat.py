"""Message helpers, structured output, the tool loop, and the course's tools.

The protocol tests use the real `openai` client against a small local HTTP server that
replies with scripted chat completions (so retries and tool loops are exercised
deterministically); the `slow` tests run against the real llama.cpp server.
"""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from course_utils.chat import conversation, marketplace, structured_output, tool_calling
from course_utils.chat.llm import ChatBackend
from scripted_http import JSONHandler, LocalServer, chat_completion
from needs import need_module


class Facts(BaseModel):
    title: str = Field(min_length=3)
    category: Literal["Women", "Men", "Electronics"]
    price: float = Field(gt=0)


# --- a scripted OpenAI-compatible server -------------------------------------------------
class ScriptedChat:
    """Each POST gets the next scripted assistant message (a string, or a dict with tool_calls)."""

    def __init__(self, replies: list):
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):
                body = json.loads(self.read_body())
                outer.requests.append(body)
                self.send_json(chat_completion(body["model"], outer.replies.pop(0)))

        self.server = LocalServer(Handler)

    def backend(self, kind: str = "local") -> ChatBackend:
        """kind "local" stands for a server that returns tool calls as text (llama-cpp-python's)."""
        url = self.server.url
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        return ChatBackend(client, "scripted", kind, url, native_tools=kind != "local")

    def close(self):
        self.server.close()


@pytest.fixture
def scripted():
    servers = []

    def make(replies, kind="local"):
        server = ScriptedChat(replies)
        servers.append(server)
        return server, server.backend(kind)

    yield make
    for server in servers:
        server.close()


# --- messages ---------------------------------------------------------------------------
def test_conversation_sends_the_whole_history_in_order():
    messages = conversation.conversation("be brief", [("hi", "hello"), ("2+2?", "4")], "and 3+3?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == "and 3+3?"
    assert conversation.few_shot_messages("classify", [], "x") == [conversation.system("classify"), conversation.user("x")]


def test_gradio_history_with_content_parts_becomes_plain_messages():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "hi there", "metadata": None},
        {"role": "assistant", "content": None},
    ]
    assert conversation.history_to_messages(history) == [conversation.user("hello"), conversation.assistant("hi there")]


# --- structured output ------------------------------------------------------------------
def test_response_format_per_backend_kind():
    local = structured_output.response_format_for(Facts, "local")
    assert local["type"] == "json_object" and local["schema"]["required"] == ["title", "category", "price"]
    other = structured_output.response_format_for(Facts, "base_url")
    assert other["type"] == "json_schema" and other["json_schema"]["name"] == "Facts"


def test_parse_structured_reports_every_problem():
    assert structured_output.parse_structured('```json\n{"title": "Sony", "category": "Men", "price": 3}\n```', Facts).price == 3
    with pytest.raises(ValueError, match="category") as info:
        structured_output.parse_structured('{"title": "Sony", "category": "Toys", "price": -1}', Facts)
    assert "price" in str(info.value)
    with pytest.raises(ValueError):
        structured_output.parse_structured('{"title": "So', Facts)


def test_structured_chat_retries_with_the_error_then_succeeds(scripted):
    server, backend = scripted(['{"title": "Sony", "category": "Toys", "price": 5}', '{"title": "Sony", "category": "Electronics", "price": 5}'])
    facts = structured_output.structured_chat(backend, [conversation.user("extract")], Facts, retries=2)
    assert facts == Facts(title="Sony", category="Electronics", price=5)
    assert len(server.requests) == 2
    first, retry = server.requests
    assert first["response_format"]["type"] == "json_object" and "schema" in first["response_format"]
    assert "invalid" in retry["messages"][-1]["content"] and "category" in retry["messages"][-1]["content"]


def test_structured_chat_never_returns_invalid_output(scripted):
    server, backend = scripted(["not json", '{"title": "x"}', '{"title": "Sony", "category": "Men", "price": 0}'])
    with pytest.raises(structured_output.StructuredOutputError) as info:
        structured_output.structured_chat(backend, [conversation.user("extract")], Facts, retries=2)
    assert len(info.value.attempts) == 3 and len(server.requests) == 3
    assert info.value.attempts[0][0] == "not json"


# --- tools ------------------------------------------------------------------------------
def test_seller_earnings_follow_the_fee_policy():
    assert marketplace.seller_earnings(40) == {"price": 40, "selling_fee": 4.0, "processing_fee": 1.66, "seller_earns": 34.34}
    assert marketplace.seller_earnings(5)["selling_fee"] == 1.0  # the 1-dollar minimum
    assert marketplace.seller_earnings(100, relay_plus=True)["selling_fee"] == 8.0


def test_tool_run_validates_arguments():
    tool = marketplace.fee_tool()
    assert json.loads(tool.run('{"price": 40}'))["seller_earns"] == 34.34
    assert "invalid arguments" in json.loads(tool.run('{"price": -1}'))["error"]
    assert "invalid arguments" in json.loads(tool.run("{not json"))["error"]
    assert tool.spec()["function"]["parameters"]["required"] == ["price"]


def test_decision_schema_offers_tools_and_answer():
    tools = [marketplace.fee_tool(), marketplace.price_lookup_tool()]
    both = tool_calling.tool_decision_schema(tools)
    assert len(both["anyOf"]) == 3
    assert tool_calling.tool_decision_schema(tools, allow_tools=False)["required"] == ["answer"]
    assert len(tool_calling.tool_decision_schema(tools, allow_answer=False)["anyOf"]) == 2


def test_json_tool_loop_calls_the_tool_then_answers(scripted):
    server, backend = scripted(['{"tool": "seller_earnings", "arguments": {"price": 40}}', '{"answer": "You earn 34.34 dollars."}'])
    run = tool_calling.run_tools(backend, [conversation.user("I sold a jacket for 40 dollars; what do I earn?")], [marketplace.fee_tool()])
    assert run.mode == "json" and run.tool_called and run.answer == "You earn 34.34 dollars."
    assert json.loads(run.steps[0].result)["seller_earns"] == 34.34
    # The tool result went back to the model in the second request.
    assert "34.34" in server.requests[1]["messages"][-1]["content"]


def test_json_tool_loop_handles_a_model_that_never_calls_or_never_stops(scripted):
    server, backend = scripted(['{"answer": "About 30 dollars."}'])
    run = tool_calling.run_tools(backend, [conversation.user("what do I earn for 40?")], [marketplace.fee_tool()])
    assert not run.tool_called and run.steps[-1].note == "answered without calling a tool"

    call = '{"tool": "seller_earnings", "arguments": {"price": 40}}'
    server, backend = scripted([call, call, '{"answer": "34.34"}'])
    run = tool_calling.run_tools(backend, [conversation.user("q")], [marketplace.fee_tool()], max_rounds=5)
    assert run.answer == "34.34" and "repeated" in run.steps[1].note
    # After the repeat, the third request could only answer: no tool options in its schema.
    assert server.requests[2]["response_format"]["schema"]["required"] == ["answer"]


def test_native_tool_loop_sends_tool_results_back(scripted):
    call = {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "seller_earnings", "arguments": '{"price": 40}'}}],
    }  # fmt: skip
    server, backend = scripted([call, "You earn 34.34 dollars."], kind="openai")
    run = tool_calling.run_tools(backend, [conversation.user("q")], [marketplace.fee_tool()], require_tool=True)
    assert run.mode == "native" and run.tool_called and run.answer == "You earn 34.34 dollars."
    assert server.requests[0]["tool_choice"] == "required"
    assert "tools" not in server.requests[1]  # its only tool has been called: the model must answer now
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert json.loads(tool_message["content"])["seller_earns"] == 34.34


def test_price_lookup_reads_the_real_listings():
    result = marketplace.price_lookup("nike shoes")
    assert result["matches"] > 10
    assert 0 < result["min_price"] <= result["median_price"] <= result["max_price"]
    assert all("nike" in t.lower() and "shoes" in t.lower() for t in result["examples"])
    assert marketplace.price_lookup("zzqx-no-such-thing")["matches"] == 0


def test_parse_category_takes_the_first_mention():
    assert marketplace.parse_category("Electronics, or maybe Home") == "Electronics"
    assert marketplace.parse_category("sports & outdoors") == "Sports & Outdoors"
    assert marketplace.parse_category("no idea") is None


def test_parse_category_counts_whole_words_only():
    """A reply that merely echoes the title must not count as naming a category."""
    assert marketplace.parse_category("Mother's day mug, hand painted") is None  # not "Other"
    assert marketplace.parse_category("Women's skinny jeans") == "Women"  # not "Men"
    assert marketplace.parse_category("Homecoming dress") is None  # not "Home"
    assert marketplace.parse_category("Category: Men.") == "Men"
    assert marketplace.parse_category("other") == "Other"


# --- against the real local llama.cpp server ---------------------------------------------
@pytest.fixture(scope="module")
def local_backend():
    need_module("llama_cpp", "llama-cpp-python[server] is not installed")
    from course_utils.chat.llm import get_backend

    return get_backend("local")


@pytest.mark.slow
def test_local_context_window_is_the_running_servers(local_backend):
    from course_utils.chat import llm
    from course_utils.retrieval import rag

    assert local_backend.kind == "local"
    assert rag.context_window(local_backend) == llm.local_server().n_ctx == 4096


@pytest.mark.slow
def test_local_streaming_yields_pieces(local_backend, capsys):
    messages = [conversation.user("Count from one to five.")]
    pieces = list(conversation.stream_chat(local_backend, messages, max_tokens=20, temperature=0))
    assert len(pieces) > 1 and "".join(pieces).strip()
    text, timing = conversation.timed_stream(local_backend, messages, max_tokens=20, temperature=0)
    assert text == "".join(pieces) and timing["pieces"] == len(pieces)  # greedy: the same reply again
    assert 0 < timing["time to first token (s)"] <= timing["total (s)"]
    assert capsys.readouterr().out == text + "\n"  # echoed piece by piece


@pytest.mark.slow
def test_local_structured_output_is_valid(local_backend):
    messages = [conversation.system("Extract the listing facts as JSON."), conversation.user("Sony headphones for men, 120 dollars.")]
    facts = structured_output.structured_chat(local_backend, messages, Facts, retries=2, temperature=0)
    assert isinstance(facts, Facts) and facts.price > 0


@pytest.mark.slow
def test_local_tool_loop_with_a_required_tool(local_backend):
    run = tool_calling.run_tools(
        local_backend, [conversation.user("I sold a jacket for 40 dollars. How much do I earn after fees?")],
        [marketplace.fee_tool()], require_tool=True, max_rounds=2, temperature=0,
    )  # fmt: skip
    assert run.mode == ("native" if local_backend.native_tools else "json") and run.tool_called
    assert run.steps[0].name == "seller_earnings" and "seller_earns" in run.steps[0].result
    assert run.steps[-1].kind == "answer"


def test_one_request_builder_says_which_server_gets_strict_mode():
    class Nested(BaseModel):
        inner: Facts
        note: str = Field(default="", max_length=20)

    openai = structured_output.response_format_for(Nested, "openai")["json_schema"]
    assert openai["strict"] is True
    schema = openai["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["inner", "note"]
    defs = schema["$defs"]["Facts"]
    assert defs["additionalProperties"] is False and set(defs["required"]) == set(Facts.model_fields)
    assert "maxLength" not in json.dumps(schema) and "default" not in json.dumps(schema)  # outside strict mode's subset
    # the local server gets the whole schema as a grammar; other servers get it without `strict`
    assert structured_output.response_format_for(Nested, "local")["schema"] == Nested.model_json_schema()
    assert "strict" not in structured_output.response_format_for(Nested, "base_url")["json_schema"]
