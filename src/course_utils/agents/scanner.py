"""The scanner's structured selection (notebook 16 writes it out in its cells; the MCP server reuses it here).

The chat model picks the most promising listings of a page by their number, in a pydantic schema whose numbers
are a Literal: the grammar llama-server builds from it only allows listings that are on the page.
"""

from __future__ import annotations

from typing import Sequence

from .feed import DealEntry

SCAN_SYSTEM = (
    "You scan second-hand listings for bargains: items worth clearly more than their asking price. "
    "Pick the most promising ones and describe each in at most six plain words."
)


def selection_schema(count: int, picks: int):
    """A pydantic model for the scanner's reply: up to `picks` listings, named by their number 1..count.

    The numbers are a Literal, so the schema (and the grammar llama-server builds from it) only allows
    listings that are on the page: the model cannot invent one."""
    from typing import Literal

    from pydantic import BaseModel, Field, create_model

    numbers = Literal[tuple(range(1, count + 1))]
    pick = create_model(
        "Pick",
        number=(numbers, Field(description="the listing's number")),
        description=(str, Field(max_length=48, description="what the item is, in at most six words")),
        __base__=BaseModel,
    )
    return create_model("Selection", deals=(list[pick], Field(max_length=picks)), __base__=BaseModel)


def scan_prompt(entries: Sequence[DealEntry], picks: int) -> list[dict]:
    lines = [f"{i}. {e.title[:70]} | ${e.asking_price:.0f} | {e.brand or '-'} | {e.summary(60)}" for i, e in enumerate(entries, 1)]
    return [
        {"role": "system", "content": SCAN_SYSTEM},
        {"role": "user", "content": "Listings (number. title | asking price | brand | description):\n" + "\n".join(lines)
         + f"\n\nPick at most {picks}."},
    ]  # fmt: skip


def select_deals(backend, entries: Sequence[DealEntry], picks: int) -> list[tuple[DealEntry, str]]:
    """The scanner: (entry, cleaned description) for the listings the chat model picks, in its order."""
    from ..chat.structured_output import structured_chat

    if not entries:
        return []
    schema = selection_schema(len(entries), picks)
    reply = structured_chat(backend, scan_prompt(entries, picks), schema, max_tokens=30 * picks + 20, temperature=0)
    chosen, seen = [], set()
    for pick in reply.deals[:picks]:
        if pick.number not in seen:  # a number picked twice counts once
            seen.add(pick.number)
            chosen.append((entries[pick.number - 1], pick.description.strip()))
    return chosen
