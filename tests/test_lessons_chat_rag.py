"""Notebooks 04 and 05 write their lesson code in cells; the package keeps the same code for later notebooks.
These tests run the cells (tests/notebook_cells.py) and check that the two agree, and that the cells' own
helpers (the few-shot loop, the apps) do what the notebooks say."""

from __future__ import annotations

import json
from types import SimpleNamespace

import openai
import pytest

from course_utils.chat import conversation, marketplace, tool_calling
from course_utils.retrieval import knowledge_base, rag
from course_utils.chat.llm import ChatBackend
from notebook_cells import cell_namespace
from scripted_http import JSONHandler, LocalServer, chat_completion
from needs import need_module

NB04 = "04_chat_tools_ui.ipynb"
NB05 = "05_rag.ipynb"


# --- a scripted OpenAI-compatible server ---------------------------------------------------
class Scripted:
    """Each POST gets the next scripted assistant message (a string, or a dict with tool_calls); requests are kept."""

    def __init__(self, replies: list):
        self.replies, self.requests = list(replies), []
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):
                body = json.loads(self.read_body())
                outer.requests.append(body)
                if not outer.replies:
                    self.send_json({"error": {"message": "no scripted reply left"}}, status=500)
                    return
                self.send_json(chat_completion(body["model"], outer.replies.pop(0)))

        self.server = LocalServer(Handler)
        client = openai.OpenAI(base_url=self.server.url, api_key="x", max_retries=0)
        self.backend = ChatBackend(client, "scripted", "openai", self.server.url, native_tools=True)


@pytest.fixture
def scripted():
    made = []

    def make(replies):
        made.append(Scripted(replies))
        return made[-1]

    yield make
    for s in made:
        s.server.close()


def tool_call(*calls: tuple[str, str, dict | str]) -> dict:
    """An assistant message asking for tool calls: (id, name, arguments) each."""
    return {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}}
                       for i, n, a in calls],
    }  # fmt: skip


# --- 04: the tool-calling loop ---------------------------------------------------------------
TOOL_SCRIPTS = {
    # one round of calls, then the answer
    "one call": (1, [tool_call(("c1", "seller_earnings", {"price": 40})), "You earn 34.34 dollars."]),
    # two tools in a row: the second round offers only the tool not yet called
    "two rounds": (2, [tool_call(("c1", "price_lookup", {"query": "nike running"})),
                       tool_call(("c2", "seller_earnings", {"price": 45})), "They sell for about 45; you earn 38.70."]),
    # two calls at once, one to an unknown tool and one with invalid arguments: errors go back to the model
    "errors": (2, [tool_call(("c1", "ship_it", {}), ("c2", "seller_earnings", '{"price": -5}')),
                   tool_call(("c3", "seller_earnings", {"price": 5})), "You earn 3.35 dollars."]),
    # the model asks again for a tool it has used (a server may parse a call it was not offered): the
    # last round carries no tools, and a model that still calls one gets no answer
    "keeps calling": (1, [tool_call(("c1", "seller_earnings", {"price": 40})), tool_call(("c2", "seller_earnings", {"price": 40}))]),
}  # fmt: skip


@pytest.mark.parametrize("script", TOOL_SCRIPTS, ids=list(TOOL_SCRIPTS))
def test_04_tool_loop_in_the_cell_follows_the_packages_rule(scripted, script):
    """The same scripted model replies give the same requests (messages and the tools offered each round)
    and the same answer and calls from the notebook's `run_with_tools` and `tool_calling.run_tools(mode="native")`."""
    rounds, replies = TOOL_SCRIPTS[script]
    run_with_tools = cell_namespace(NB04, "def run_with_tools(")["run_with_tools"]
    tools = [marketplace.fee_tool(), marketplace.price_lookup_tool()]
    messages = [conversation.system("help sellers"), conversation.user("a question")]

    cell_side, package_side = scripted(replies), scripted(replies)
    answer, calls = run_with_tools(cell_side.backend, messages, tools, tool_rounds=rounds, temperature=0)
    run = tool_calling.run_tools(package_side.backend, messages, tools, max_rounds=rounds, mode="native", temperature=0)

    assert cell_side.requests == package_side.requests
    assert answer == run.answer
    steps = [s for s in run.steps if s.kind == "tool_call"]
    assert [(n, json.loads(a), r) for n, a, r in calls] == [(s.name, s.arguments, s.result) for s in steps]
    offered = [[t["function"]["name"] for t in r.get("tools", [])] for r in cell_side.requests]
    if script == "two rounds":
        assert offered == [["seller_earnings", "price_lookup"], ["seller_earnings"], []]
    if script == "keeps calling":
        assert answer == "" and offered == [["seller_earnings", "price_lookup"], []]
    assert messages == [conversation.system("help sellers"), conversation.user("a question")]  # the caller's list is not changed


def test_04_tool_errors_reach_the_model(scripted):
    rounds, replies = TOOL_SCRIPTS["errors"]
    run_with_tools = cell_namespace(NB04, "def run_with_tools(")["run_with_tools"]
    side = scripted(replies)
    answer, calls = run_with_tools(side.backend, [conversation.user("q")], [marketplace.fee_tool()], tool_rounds=rounds)
    results = [json.loads(r) for _, _, r in calls]
    assert "no tool named 'ship_it'" in results[0]["error"] and "invalid arguments" in results[1]["error"]
    assert answer == "You earn 3.35 dollars." and results[2]["seller_earns"] == 3.35
    sent = side.requests[1]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "tool"] and sent[-1]["tool_call_id"] == "c2"


# --- 04: streaming ---------------------------------------------------------------------------
def fake_stream_backend(pieces: list[str | None]):
    """A backend whose client streams `pieces` as chat-completion chunks (None: a chunk with no text)."""

    def create(**kwargs):
        assert kwargs["stream"] is True
        chunks = [SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=p))]) for p in pieces]
        chunks.append(SimpleNamespace(choices=[]))  # a usage-only chunk has no choices

        class Stream(list):
            def close(self):
                pass

        return Stream(chunks)

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    return ChatBackend(client, "fake", "local", "http://fake/v1")


def test_04_streaming_cell_agrees_with_timed_stream(capsys):
    backend = fake_stream_backend([None, "Use ", "daylight", ". ", "", "Iron it.", None])
    ns = cell_namespace(NB04, "def stream_reply(", backend=backend, system_prompt="be brief")
    text, timings = ns["stream_reply"](backend, [conversation.user("tips?")], max_tokens=5)
    package_text, package_timings = conversation.timed_stream(backend, [conversation.user("tips?")], max_tokens=5)
    assert text == package_text == "Use daylight. Iron it."
    assert timings.keys() == package_timings.keys() and timings["pieces"] == package_timings["pieces"] == 4
    assert 0 <= timings["time to first token (s)"] <= timings["total (s)"]
    assert capsys.readouterr().out.count("Use daylight. Iron it.\n") == 3  # the cell's demo, and the two calls above


# --- 04: few-shot prompts ---------------------------------------------------------------------
def test_04_few_shot_cell_sends_the_examples_and_scores_the_replies(scripted):
    ns = cell_namespace(NB04, "def shot_messages(")
    listings = [{"title": "iPhone 7 case", "category": "Electronics"}, {"title": "Mother's day mug", "category": "Home"}]
    examples = [{"title": "Lipstick set", "category": "Beauty"}, {"title": "Lego bricks", "category": "Kids"}]
    # 0 shots: the second reply echoes the title (no category); 2 shots: both name one, one is right
    side = scripted(["Electronics", "Mother's day mug", "Electronics", "Kids"])
    zero = ns["classify"](side.backend, listings, [])
    two = ns["classify"](side.backend, listings, examples)
    assert [r["predicted"] for r in zero] == ["Electronics", None] and [r["correct"] for r in two] == [True, False]
    sent = [r["messages"] for r in side.requests]
    assert [len(m) for m in sent] == [2, 2, 6, 6]  # system + title, then two example pairs more
    assert sent[2][1:3] == [{"role": "user", "content": "Lipstick set"}, {"role": "assistant", "content": "Beauty"}]
    assert all(c in sent[0][0]["content"] for c in marketplace.CATEGORIES)
    # the cell's messages are the package's few-shot layout (notebook 09 builds its prompts with it)
    shots = [(e["title"], e["category"]) for e in examples]
    assert ns["shot_messages"](examples, "x") == conversation.few_shot_messages(ns["INSTRUCTION"], shots, "x")


# --- 04: the chat app -------------------------------------------------------------------------
def test_04_chat_app_shows_a_failure_in_the_chat(scripted):
    """A back end that cannot answer gives a message naming it, not a bare Gradio 'Error'."""
    side = scripted([])  # no scripted reply: the server fails the request
    ns = cell_namespace(NB04, "gr.ChatInterface(", backend=side.backend)
    reply = list(ns["respond"]("hi", [{"role": "user", "content": [{"type": "text", "text": "earlier"}]}]))[-1]
    assert reply.startswith("Error from openai: model scripted at http://127.0.0.1:"), reply
    sent = side.requests[0]
    assert sent["stream"] is True and [m["role"] for m in sent["messages"]] == ["system", "user", "user"]


def test_04_chat_app_streams_through_its_own_api():
    """The cell's app, launched by the notebook's launch cell and called the way the page calls it."""
    from gradio_client import Client

    backend = fake_stream_backend([None, "Hello", " there", "!"])
    app = cell_namespace(NB04, "gr.ChatInterface(", backend=backend)["app"]
    url = cell_namespace(NB04, "app.launch(", app=app)["url"]
    try:
        reply = Client(url, verbose=False).predict(message="Hi", api_name="/chat")
    finally:
        app.close()
    assert url.startswith("http://127.0.0.1:") and reply == "Hello there!"


@pytest.mark.slow
def test_04_chat_app_answers_through_its_own_api():
    """Notebook 04's app over the real local server, called the way the page calls it (gradio_client)."""
    need_module("llama_cpp", "llama-cpp-python[server] is not installed")
    from gradio_client import Client

    from course_utils.chat import apps
    from course_utils.chat.llm import get_backend

    app = cell_namespace(NB04, "gr.ChatInterface(", backend=get_backend("local"))["app"]
    url = apps.launch(app)
    try:
        reply = Client(url, verbose=False).predict(message="Say hello in three words.", api_name="/chat")
    finally:
        apps.close(app)
    assert url.startswith("http://127.0.0.1:")
    assert isinstance(reply, str) and reply.strip() and not reply.startswith("Error from"), reply


# --- 05: chunking, metrics, prompt, reference check ---------------------------------------------
@pytest.fixture(scope="module")
def documents():
    return knowledge_base.load_documents()


def test_05_splitter_cell_cuts_where_the_package_cuts(documents, capsys):
    split_document = cell_namespace(NB05, "def split_document(", documents=documents)["split_document"]
    for chunking in (*knowledge_base.CHUNKINGS, knowledge_base.Chunking("tiny", 200, 0)):
        by_package = [c.page_content for c in knowledge_base.split_documents(documents, chunking)]
        by_cell = [text for d in documents for text in split_document(d, chunking.chunk_size, chunking.chunk_overlap)]
        assert by_cell == by_package, chunking.label


RANKS = [
    [1, 2, None, 5, 3, 1, None, 10, 4],
    [None, None],
    [1],
    [7, 2, 2, None, 1, 6, 9, 3, 3, 8, 1],
]


@pytest.mark.parametrize("ranks", RANKS)
def test_05_metrics_cell_agrees_with_retrieval_metrics(ranks):
    ns = cell_namespace(NB05, "def hit_at_k(")
    ks = (1, 3, 5, 10)
    package = rag.retrieval_metrics(ranks, ks=ks)
    assert {f"hit@{k}": ns["hit_at_k"](ranks, k) for k in ks} == {f"hit@{k}": package[f"hit@{k}"] for k in ks}
    assert ns["mrr"](ranks) == package["mrr"]


def test_05_first_rank_cell_agrees_with_first_hit_rank():
    first_rank = cell_namespace(NB05, "def first_rank(")["first_rank"]
    for sources, expected in ((["a", "b", "b", "c"], "b"), (["a"], "z"), ([], "a"), (["x", "y", "x"], "x")):
        assert first_rank(sources, expected) == rag.first_hit_rank(sources, expected)


def test_05_prompt_cell_builds_the_chains_prompt(documents):
    rag_messages = cell_namespace(NB05, "def rag_messages(")["rag_messages"]
    chunks = knowledge_base.split_documents(documents[:2], knowledge_base.CHUNKINGS[0])[:3]
    question = "What is the selling fee?"
    chain = rag.RagChain(store=None, llm=None, embeddings=object())  # no store, model or embedding is touched
    prompt = chain.prompt.format_messages(context=rag.format_context(chunks), question=question)
    roles = {"system": "system", "human": "user"}
    assert rag_messages(question, chunks) == [{"role": roles[m.type], "content": m.content} for m in prompt]


def test_05_fact_found_cell_agrees_with_the_package():
    fact_found = cell_namespace(NB05, "def fact_found(")["fact_found"]
    questions = rag.load_questions()
    answers = [
        "", "I don't know.", "It costs 79 dollars.", "41000 tonnes", "About 41,000 tonnes of goods.",
        "It was founded on 14 March 2017 by Okafor and Brandt.", "Cedar Peak Capital led it.", "3 business days",
        *(q["answer"] for q in questions), *(q["answer"].upper() for q in questions[:5]),
    ]
    for q in questions:
        for answer in answers:
            assert fact_found(q["answer"], answer) == rag.fact_found(q["answer"], answer), (q["answer"], answer)
    assert all(rag.fact_found(q["answer"], q["answer"]) for q in questions)  # a reference holds its own fact
    assert rag.fact_found("41,000 tonnes", "41000 tonnes") and not rag.fact_found("79 dollars", "97 dollars")


# --- 05: the RAG app ----------------------------------------------------------------------------
def test_05_rag_app_turns_a_refused_question_into_a_message():
    class Chain:
        def stream(self, question):
            if len(question) > 100:
                raise rag.QuestionTooLongError("the question is 400 tokens long")
            if not question.strip():
                raise ValueError("the question is empty")
            yield "Yes."
            yield "Yes.\n\nSources: policy-shipping.md"

    ns = cell_namespace(NB05, "gr.ChatInterface(", chain=Chain(), asked=[{"question": "q"}])
    respond = ns["respond"]
    assert list(respond("Why? " * 40, []))[0].startswith("Question too long:")
    assert list(respond("  ", [])) == ["Cannot answer: the question is empty"]
    assert list(respond("Ship?", []))[-1].endswith("Sources: policy-shipping.md")
