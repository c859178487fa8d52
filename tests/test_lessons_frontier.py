"""Notebook 09 writes the fine-tuning line and the example checks out in its cells; the package keeps them for
notebook 10 and for whole files. These tests check that the two agree."""

import json
from types import SimpleNamespace

import pytest

from course_utils.pricing import finetune, frontier
from course_utils.pricing.items import Item

from notebook_cells import cell_namespace

NOTEBOOK = "09_frontier_pricing_and_finetuning.ipynb"
ITEMS = [
    Item(id="a", title="Blue denim jacket", description="Worn twice", categories=("Women", "Coats"), price=39.6),
    Item(id="b", title="Phone case", categories=("Electronics",), price=0.4),
    Item(id="c", title="Lamp", description="Brass, 1970s", price=1249.5),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda it: it.id)
def test_the_cells_jsonl_line_is_the_packages(item, tmp_path):
    cell = cell_namespace(NOTEBOOK, "def chat_example(", finetune=finetune, splits=SimpleNamespace(train=[item]))
    written = finetune.write_jsonl([item], tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert cell["line"] == written
    assert cell["chat_example"](item)["messages"] == finetune.chat_messages(item)


BROKEN = [
    {"messages": [{"role": "user", "content": "How much?"}, {"role": "assistant", "content": " "}, {"role": "robot", "content": "hi"}]},
    {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "Price is $3.00"}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q again"}]},
    {"messages": [{"role": "user", "content": "q"}]},
    {"messages": []},
]


def test_the_cells_check_flags_what_the_package_flags():
    import pandas as pd

    check = cell_namespace(NOTEBOOK, "def check(example)", finetune=finetune, pd=pd, splits=SimpleNamespace(train=[ITEMS[0]]),
                           chat_example=lambda item: {"messages": finetune.chat_messages(item)})
    for example in BROKEN + [{"messages": finetune.chat_messages(it)} for it in ITEMS]:
        assert bool(check["check"](example)) == bool(finetune.example_errors(example)), example


def test_the_zero_shot_request_written_out_is_the_pricers():
    item = ITEMS[0]
    messages = [
        {"role": "system", "content": finetune.SYSTEM_PROMPT},
        {"role": "user", "content": f"{finetune.user_prompt(item)}\n\n{frontier.INSTRUCTION}"},
    ]
    assert frontier.zero_shot_messages(item) == messages
    assert json.loads(json.dumps(messages)) == messages
