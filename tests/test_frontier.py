"""Chat pricers: prompts, few-shot examples, structured-output requests and answer reading."""

import json

import pytest

from course_utils.pricing import frontier
from course_utils.pricing.items import Item


def items(n):
    return [Item(id=str(k), title=f"Thing {k}", price=float(5 + 10 * k)) for k in range(n)]


class Backend:
    """A stand-in chat back end that answers from a list (no network, no model)."""

    kind = "local"
    model = "test-model"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def chat(self, messages, **params):
        self.calls.append((messages, params))
        return self.replies.pop(0)


def test_few_shot_examples_span_the_price_range_and_are_seeded():
    train = items(100)
    picked = frontier.pick_examples(train, 4, seed=1)
    prices = sorted(it.price for it in picked)
    assert len(picked) == 4 and prices[0] < 300 < prices[-1]
    assert picked == frontier.pick_examples(train, 4, seed=1)
    with pytest.raises(ValueError, match="at least"):
        frontier.pick_examples(items(2), 3)


def test_few_shot_messages_alternate_and_end_with_the_question():
    examples = items(2)
    messages = frontier.few_shot_messages(items(3)[2], examples)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "Price is $5.00" and "Thing 2" in messages[-1]["content"]


def test_response_format_per_backend():
    local = frontier.response_format("local")
    assert local["type"] == "json_object" and local["schema"]["required"] == ["price"]
    openai = frontier.response_format("openai")
    assert openai["json_schema"]["strict"] is True
    assert openai["json_schema"]["schema"]["additionalProperties"] is False


def test_pricer_parses_answers_and_counts_fallbacks():
    backend = Backend(["Price is $12.50", "no idea", "about 30 dollars"])
    pricer = frontier.ChatPricer(backend, "zero-shot", fallback=17.0, use_cache=False)
    assert [pricer(it) for it in items(3)] == [12.5, 17.0, 30.0]
    assert pricer.failures == ["1"] and pricer.failure_rate == pytest.approx(1 / 3)
    assert backend.calls[0][1]["temperature"] == 0.0


def test_structured_pricer_reads_json_and_sends_the_schema():
    backend = Backend(['{"price": 42.0}', "Price is $9"])
    pricer = frontier.ChatPricer(backend, "structured", fallback=17.0, use_cache=False)
    assert [pricer(it) for it in items(2)] == [42.0, 9.0]
    assert backend.calls[0][1]["response_format"]["type"] == "json_object"


def test_bad_styles_are_clear_errors():
    with pytest.raises(ValueError, match="style"):
        frontier.ChatPricer(Backend([]), "telepathy")
    with pytest.raises(ValueError, match="examples"):
        frontier.ChatPricer(Backend([]), "few-shot")


def test_a_fine_tuned_model_is_asked_with_the_chat_it_was_trained_on(tmp_path):
    from course_utils.pricing import finetune

    train = items(3)
    path = finetune.write_jsonl(train, tmp_path / "train.jsonl")
    trained_on = [row["messages"] for row in finetune.read_jsonl(path)]
    backend = Backend(["Price is $5.00"] * 3)
    pricer = frontier.ChatPricer(backend, "fine-tuned", fallback=17.0, use_cache=False)
    assert [pricer(it) for it in train] == [5.0] * 3
    assert [call[0] for call in backend.calls] == [messages[:-1] for messages in trained_on]  # the answer left out
    assert frontier.INSTRUCTION not in json.dumps([call[0] for call in backend.calls])


# --- against the real local llama.cpp server ---------------------------------------------
@pytest.mark.slow
def test_the_structured_pricer_gets_json_from_the_real_local_server():
    """The schema goes to llama.cpp as a grammar, so even the CI model can only answer {"price": <number>}."""
    from needs import need_module

    need_module("llama_cpp", "llama-cpp-python[server] is not installed")
    from course_utils.chat.llm import get_backend

    backend = get_backend("local")
    pricer = frontier.ChatPricer(backend, "structured", fallback=-1.0, use_cache=False)
    listings = items(3)
    prices = [pricer(it) for it in listings]
    assert pricer.failures == [] and all(p > 0 for p in prices)  # no fallback: every answer parsed
    for it in listings:
        assert isinstance(frontier.PriceEstimate.model_validate_json(pricer.answers[it.id]).price, float)
