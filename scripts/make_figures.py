"""Draw the course's figures into img/ (matplotlib only, no graphviz).

    python scripts/make_figures.py                      # every figure
    python scripts/make_figures.py --only lora          # one figure (repeat --only for more)
    python scripts/make_figures.py --only leaderboard --results build/test-results

Figures and where they are shown:

    course_map        README        the notebooks in learning order, grouped by course part
    price_tokens      notebook 01   a price and a product line cut into tokens by the course's tokenizer
    lora              notebook 10   a frozen matrix W beside the trainable low-rank update B A
    rag_pipeline      notebook 05   indexing and answering with retrieval-augmented generation
    pricing_pipeline  notebook 07   listings to Items to splits to pricers to the ensemble and leaderboard
    leaderboard       README        the latest leaderboard in the results store (a placeholder when empty)

The course map reads each notebook's title from its first markdown cell, so a new notebook shows
up when the figures are drawn again. Output is byte-for-byte repeatable: fixed sizes, matplotlib's
bundled fonts, and no date or software version in the PNG metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "img"
DPI = 110
# No "Software" (matplotlib's version) and no date: regenerating changes no byte needlessly.
PNG_METADATA = {"Software": None}

# Course parts by notebook number; a notebook outside every range gets a column of its own ("More").
PARTS = (
    ("Foundations", range(0, 4), "#dbe9f6", "#2b6cb0"),
    ("Chat & RAG", range(4, 7), "#dcf2e3", "#2f855a"),
    ("Pricing", range(7, 15), "#fdebd3", "#c05621"),
    ("Agents & serving", range(15, 17), "#ece4f6", "#6b46c1"),
)
MORE_PART = ("More", None, "#edf2f7", "#4a5568")
# What each notebook leaves behind, one short line; a notebook missing here shows its subtitle instead.
BUILDS = {
    0: "a checked environment, a profile, a first chat completion",
    1: "token ids, chat templates, a BPE trained here",
    2: "pipelines for generation, embeddings, a classifier",
    3: "int8 by hand, 8-bit and NF4 models, GGUF",
    4: "streaming, a tool-calling loop, a Gradio chat app",
    5: "a Chroma store, answers with sources, hit@k and MRR@10",
    6: "hybrid search, reranking, an LLM judge, ROUGE and BLEU",
    7: "curated Items and fixed train / validation / test splits",
    8: "baselines from a TF-IDF ridge to LightGBM",
    9: "chat pricers, fine-tuning JSONL, a full fine-tune",
    10: "a QLoRA adapter on a 4-bit base",
    11: "the fine-tune scored, greedy vs weighted prices",
    12: "DPO on price preferences, a two-process training run",
    13: "a product vector store and the RAG pricer",
    14: "the ensemble blended on validation, the leaderboard",
    15: "the pricer as a web service, under a load test",
    16: "deal-hunting agents over MCP, a dashboard, scored",
}

GREY, GREY_EDGE = "#d9d9d9", "#6b6b6b"
INK = "#1a202c"
MUTED = "#4a5568"


# --- drawing helpers -----------------------------------------------------------------------
def _canvas(width: float, height: float):
    """A figure whose data units are inches: a box 1.5 wide is 1.5 inches wide on the page."""
    fig = Figure(figsize=(width, height), dpi=DPI)  # measured at the dpi it is saved with
    FigureCanvasAgg(fig)  # a renderer, so _fit can measure text
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata=PNG_METADATA, facecolor="white")
    return path


def _plain(text: str) -> str:
    """Text shown as typed: a `$` must not start matplotlib's mathtext."""
    return text.replace("$", r"\$")


def _fit(text, max_width: float, smallest: float = 6.5):
    """Shrink a text's font until it is at most `max_width` inches wide."""
    fig = text.get_figure()
    renderer = fig.canvas.get_renderer()
    while text.get_window_extent(renderer).width / fig.dpi > max_width and text.get_fontsize() > smallest:
        text.set_fontsize(text.get_fontsize() - 0.25)
    return text


def _box(ax, x, y, w, h, title, body="", fc="#ffffff", ec=INK, title_size=10.5, body_size=8.5, width_chars=None):
    """A rounded box at (x, y) (lower left) with a bold title and an optional wrapped body."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=fc, ec=ec, lw=1.3))
    if body:
        width_chars = width_chars or max(12, int(w * 13))
        body = "\n".join(textwrap.wrap(body, width_chars))
        _fit(ax.text(x + w / 2, y + h - 0.1, title, ha="center", va="top", fontsize=title_size, fontweight="bold", color=INK), w - 0.14)
        ax.text(x + w / 2, y + h - 0.36, body, ha="center", va="top", fontsize=body_size, color=MUTED, linespacing=1.25)
    else:
        _fit(ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=title_size, fontweight="bold", color=INK), w - 0.14)


def _arrow(ax, start, end, color=INK, style="-|>", lw=1.3, ls="-", rad=0.0, label=None, label_offset=(0, 0.1), connection=None):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=13, color=color, lw=lw, linestyle=ls,
            connectionstyle=connection or f"arc3,rad={rad}", shrinkA=2, shrinkB=2,
        )
    )
    if label:
        mx, my = (start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=8, color=MUTED, style="italic")


# --- the course map ---------------------------------------------------------------------------
def notebook_titles(folder: Path = ROOT / "notebooks") -> list[tuple[int, str, str]]:
    """(number, title, subtitle) of each NN_*.ipynb, from the '# NN · Title: subtitle' heading of its first markdown cell."""
    found = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        first = next((c for c in cells if c["cell_type"] == "markdown"), None)
        if first is None:
            raise ValueError(f"{path.name} has no markdown cell to take its title from")
        source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
        heading = next((line for line in source.splitlines() if line.startswith("# ")), None)
        if heading is None:
            raise ValueError(f"the first markdown cell of {path.name} has no '# ' heading")
        heading = re.sub(r"^#\s*\d+\s*[·.:-]?\s*", "", heading).strip()
        title, _, subtitle = heading.partition(":")
        found.append((int(path.name[:2]), title.strip(), subtitle.strip()))
    return found


def _part_of(number: int):
    return next((p for p in PARTS if number in p[1]), MORE_PART)


def course_map(path: Path) -> Path:
    notebooks = notebook_titles()
    if not notebooks:
        raise ValueError("no notebooks/NN_*.ipynb found to draw the course map from")
    parts: list[tuple[tuple, list]] = []  # consecutive notebooks of one part, in learning order
    for number, title, subtitle in notebooks:
        part = _part_of(number)
        if not parts or parts[-1][0] is not part:
            parts.append((part, []))
        parts[-1][1].append((number, title, subtitle))
    # Stack short parts in one column while they fit beside the longest part.
    col_w, gap, box_h, step, head = 4.3, 0.7, 0.66, 0.8, 0.5
    tallest = max(head + len(items) * step for _, items in parts)
    columns: list[list[tuple[tuple, list]]] = [[]]
    used = 0.0
    for part in parts:
        need = head + len(part[1]) * step
        if columns[-1] and used + need > tallest + 1e-9:
            columns.append([])
            used = 0.0
        columns[-1].append(part)
        used += need
    top = 0.85
    width = 0.35 + len(columns) * col_w + (len(columns) - 1) * gap + 0.35
    height = top + tallest + 0.15
    fig, ax = _canvas(width, height)
    ax.text(0.35, height - 0.22, "The course map: the notebooks in learning order", fontsize=14, fontweight="bold", va="top", color=INK)
    previous = None  # (x, y, column) of the last box drawn
    for c, column in enumerate(columns):
        x = 0.35 + c * (col_w + gap)
        y_cursor = height - top
        for (name, _, fc, ec), items in column:
            first, last = items[0][0], items[-1][0]
            span = f"{first:02d}-{last:02d}" if first != last else f"{first:02d}"
            ax.text(x, y_cursor - head + 0.12, f"{name}  ({span})", fontsize=11.5, fontweight="bold", color=ec, va="bottom")
            y_cursor -= head
            for k, (number, title, subtitle) in enumerate(items):
                y = y_cursor - box_h
                ax.add_patch(FancyBboxPatch((x, y), col_w, box_h, boxstyle="round,pad=0,rounding_size=0.08", fc=fc, ec=ec, lw=1.3))
                _fit(ax.text(x + 0.12, y + box_h - 0.1, f"{number:02d}  {title}", fontsize=10, fontweight="bold", va="top", color=INK), col_w - 0.3)
                _fit(ax.text(x + 0.12, y + box_h - 0.38, BUILDS.get(number) or subtitle, fontsize=8.4, va="top", color=MUTED), col_w - 0.3)
                if previous is not None:
                    px, py, pc = previous
                    if pc == c:  # below the previous box; past a part's heading on the right, clear of its name
                        ax_x = x + (col_w / 2 if k else col_w * 0.85)
                        _arrow(ax, (ax_x, py), (ax_x, y + box_h), color=MUTED, lw=1.0)
                    else:  # out of the right side, up or down the gap, into the next column's first box
                        _arrow(ax, (px + col_w, py + box_h / 2), (x, y + box_h / 2), color=MUTED,
                               connection="arc,angleA=0,angleB=180,armA=18,armB=18,rad=6")
                previous = (x, y, c)
                y_cursor -= step
    return _save(fig, path)


# --- how a price tokenizes --------------------------------------------------------------------
TOKEN_COLOURS = ("#fbd38d", "#9ae6b4", "#90cdf4", "#fbb6ce", "#d6bcfa", "#feb2b2", "#81e6d9")


def _course_tokenizer():
    """The tokenizer notebook 01 loads: the offline profile's chat model, from the course's own packages."""
    from course_utils.core import config
    from course_utils.foundations import models

    profile = config.get_profile("offline")
    return models.load_tokenizer("chat_model", profile), profile.chat_model.short_name


def price_tokens(path: Path, tokenizer=None, tokenizer_name: str | None = None) -> Path:
    from course_utils.pricing.items import PRICE_PREFIX

    if tokenizer is None:
        tokenizer, tokenizer_name = _course_tokenizer()
    examples = (PRICE_PREFIX + "1,299.99", "Apple AirPods Pro (2nd gen), like new, with case. " + PRICE_PREFIX + "189.00")
    char_w, pad, row_h, max_w = 0.118, 0.1, 0.95, 11.6
    laid_out = []  # per example: rows of (x, width, piece, id)
    for text in examples:
        ids = tokenizer.encode(text, add_special_tokens=False)
        rows, x = [[]], 0.0
        for token_id in ids:
            piece = tokenizer.decode([token_id]).replace(" ", "␣")
            w = len(piece) * char_w + 2 * pad
            if x + w > max_w and rows[-1]:
                rows.append([])
                x = 0.0
            rows[-1].append((x, w, piece, token_id))
            x += w + 0.06
        laid_out.append((text, ids, rows))
    height = 0.85 + sum(0.55 + len(rows) * row_h for _, _, rows in laid_out) + 0.5
    fig, ax = _canvas(12.4, height)
    ax.text(0.35, height - 0.2, f"How text becomes tokens: the {tokenizer_name} tokenizer of the offline profile",
            fontsize=13, fontweight="bold", va="top", color=INK)
    y = height - 0.85
    k = 0
    for text, ids, rows in laid_out:
        ax.text(0.35, y, f"\u201c{_plain(text)}\u201d  \u2192  {len(text)} characters, {len(ids)} tokens", fontsize=10, va="top", color=INK)
        y -= 0.45
        for row in rows:
            for x, w, piece, token_id in row:
                ax.add_patch(FancyBboxPatch((0.35 + x, y - 0.42), w, 0.42, boxstyle="round,pad=0,rounding_size=0.05",
                                            fc=TOKEN_COLOURS[k % len(TOKEN_COLOURS)], ec="#4a5568", lw=0.8))
                ax.text(0.35 + x + w / 2, y - 0.21, _plain(piece), ha="center", va="center", fontsize=11, family="DejaVu Sans Mono", color=INK)
                ax.text(0.35 + x + w / 2, y - 0.5, str(token_id), ha="center", va="top", fontsize=7, color=MUTED)
                k += 1
            y -= row_h
        y -= 0.1
    digits = [tokenizer.decode([i]).strip() for i in laid_out[0][1]]
    digits = [d for d in digits if any(ch.isdigit() for ch in d)]
    if digits and all(len(d) == 1 for d in digits):
        note = r"Every digit is a token of its own: the model reads a price one digit at a time, and \$1,299.99 costs more tokens than \$7."
    else:
        note = "Digits are grouped into multi-digit tokens: " + ", ".join(repr(d) for d in digits)
    note += "  (\u2423 marks a space; small numbers are token ids)"
    ax.text(0.35, 0.3, note, fontsize=9, color=MUTED, va="bottom")
    return _save(fig, path)


# --- LoRA beside a frozen matrix ------------------------------------------------------------------
def lora_numbers(d: int, r: int) -> dict:
    frozen = d * d
    trainable = d * r + r * d
    return {"d": d, "r": r, "frozen": frozen, "trainable": trainable, "share": trainable / frozen}


def _lora_rank() -> tuple[int, int]:
    """The rank and alpha the offline profile trains with (notebook 10)."""
    try:
        from course_utils.core import config

        profile = config.get_profile("offline")
        return profile.size("lora_r"), profile.size("lora_alpha")
    except Exception:  # the figure does not depend on the package being importable
        return 16, 32


def lora(path: Path, d: int = 4096) -> Path:
    r, alpha = _lora_rank()
    n = lora_numbers(d, r)
    fig, ax = _canvas(11.5, 5.6)
    ax.text(0.35, 5.38, "LoRA: a frozen weight matrix plus a trainable low-rank update", fontsize=14, fontweight="bold", va="top", color=INK)
    side, thin, base = 3.0, 0.42, 1.45
    # W: frozen, grey, d x d
    wx = 0.6
    ax.add_patch(Rectangle((wx, base), side, side, fc=GREY, ec=GREY_EDGE, lw=1.5, hatch="///"))
    ax.text(wx + side / 2, base + side / 2 + 0.18, "W", fontsize=30, ha="center", va="center", color="#333333", fontweight="bold",
            bbox=dict(fc=GREY, ec="none", pad=2))
    ax.text(wx + side / 2, base + side / 2 - 0.42, "frozen (4-bit in QLoRA)", fontsize=9.5, ha="center", va="center", color="#333333",
            bbox=dict(fc=GREY, ec="none", pad=2))
    ax.text(wx + side / 2, base - 0.12, f"d \u00d7 d = {d:,} \u00d7 {d:,}", ha="center", va="top", fontsize=10, color=INK)
    ax.text(wx + side + 0.45, base + side / 2, "+", fontsize=30, ha="center", va="center", color=INK)
    # B: d x r, trainable, starts at zero so training starts from the base model exactly
    bx = wx + side + 0.95
    ax.add_patch(Rectangle((bx, base), thin, side, fc="#fbd38d", ec="#c05621", lw=1.5))
    ax.text(bx + thin / 2, base + side / 2, "B", fontsize=20, ha="center", va="center", fontweight="bold", color=INK)
    ax.text(bx + thin / 2, base - 0.12, f"d \u00d7 r\n{d:,} \u00d7 {r}\nstarts at 0", ha="center", va="top", fontsize=9.5, color=INK)
    ax.text(bx + thin + 0.3, base + side / 2, "\u00d7", fontsize=22, ha="center", va="center", color=INK)
    # A: r x d, trainable, random start
    ax_ = bx + thin + 0.6
    ay = base + side - thin
    ax.add_patch(Rectangle((ax_, ay), side, thin, fc="#90cdf4", ec="#2b6cb0", lw=1.5))
    ax.text(ax_ + side / 2, ay + thin / 2, "A", fontsize=20, ha="center", va="center", fontweight="bold", color=INK)
    ax.text(ax_ + side / 2, ay - 0.12, f"r \u00d7 d = {r} \u00d7 {d:,}, random start", ha="center", va="top", fontsize=9.5, color=INK)
    ax.text(ax_ + side / 2, base + 0.95, "trainable: only B and A\nget gradients and optimizer state",
            ha="center", va="center", fontsize=10, color="#c05621", fontweight="bold")
    # the maths and the counts
    tx = ax_ + side + 0.35
    ax.text(tx, base + side - 0.05, r"$h = W\,x + \frac{\alpha}{r}\,B\,A\,x$", fontsize=17, va="top", color=INK)
    ax.text(tx, base + side - 0.85,
            f"rank r = {r}, \u03b1 = {alpha}\n(the offline profile's lora_r\nand lora_alpha), scale \u03b1/r = {alpha / r:g}",
            fontsize=9.5, va="top", color=MUTED, linespacing=1.3)
    ax.text(tx, base + 0.7,
            f"frozen W:  {n['frozen']:>12,}\ntrainable:  {n['trainable']:>12,}\n= {n['share']:.2%} of W",
            fontsize=10.5, va="top", family="DejaVu Sans Mono", color=INK, linespacing=1.35)
    ax.text(0.35, 0.35,
            f"One {d:,} \u00d7 {d:,} projection (a 7B-class model's width). After training, B A can be merged into W "
            "or kept as a small adapter file. r is drawn wider than scale.",
            fontsize=9, color=MUTED, va="bottom")
    return _save(fig, path)


# --- the RAG pipeline -------------------------------------------------------------------------------
def rag_pipeline(path: Path) -> Path:
    fig, ax = _canvas(13.45, 5.4)
    ax.text(0.35, 5.2, "Retrieval-augmented generation (notebook 05)", fontsize=14, fontweight="bold", va="top", color=INK)
    green, green_edge, blue, blue_edge = "#dcf2e3", "#2f855a", "#dbe9f6", "#2b6cb0"
    # indexing, once
    ax.text(0.35, 4.55, "Index once", fontsize=11, fontweight="bold", color=green_edge)
    w, h, y_top = 1.85, 0.95, 3.35
    top = [
        ("Documents", "the knowledge base, markdown with metadata"),
        ("Chunks", "pieces of a few hundred characters, overlapping"),
        ("Embeddings", "one vector per chunk (sentence-embedding model)"),
        ("Vector store", "Chroma: vectors, text and source of every chunk"),
    ]
    xs_top = [0.35 + i * 2.6 for i in range(len(top))]
    for x, (title, body) in zip(xs_top, top):
        _box(ax, x, y_top, w, h, title, body, fc=green, ec=green_edge)
    for i, label in enumerate(("text splitter", "embed", "add")):
        _arrow(ax, (xs_top[i] + w, y_top + h / 2), (xs_top[i + 1], y_top + h / 2), label=label)
    # answering, per question
    ax.text(0.35, 2.35, "Answer each question", fontsize=11, fontweight="bold", color=blue_edge)
    bw, y_bot = 1.6, 0.85
    bottom = [
        ("Question", "what the user asks"),
        ("Embedding", "the same model as the chunks"),
        ("Top-k chunks", "nearest by cosine similarity"),
        ("Prompt", "question + chunks, each with its source"),
        ("LLM", "answers only from the context"),
        ("Answer", "with citations of the sources"),
    ]
    xs_bot = [0.35 + i * 2.22 for i in range(len(bottom))]
    for x, (title, body) in zip(xs_bot, bottom):
        _box(ax, x, y_bot, bw, h, title, body, fc=blue, ec=blue_edge)
    for i, label in enumerate(("embed", "search", "fill", "generate", "")):
        _arrow(ax, (xs_bot[i] + bw, y_bot + h / 2), (xs_bot[i + 1], y_bot + h / 2), label=label or None)
    store_x = xs_top[3] + w / 2
    _arrow(ax, (store_x, y_top), (xs_bot[2] + bw / 2 + 0.35, y_bot + h), color=green_edge, label="k nearest", label_offset=(0.55, 0))
    _arrow(ax, (xs_top[2] + w / 2 - 0.3, y_top), (xs_bot[1] + bw / 2, y_bot + h), color=MUTED, ls="--", style="-",
           label="same embedding model", label_offset=(-0.85, 0))
    ax.text(0.35, 0.3,
            "Retrieval is scored on its own (hit@k, MRR@10 over a question set), the answers against reference facts.",
            fontsize=9, color=MUTED, va="bottom")
    return _save(fig, path)


# --- the pricing pipeline ---------------------------------------------------------------------------
def _split_sizes() -> dict:
    try:
        from course_utils.core import config

        profile = config.get_profile("offline")
        return {k: profile.size(k) for k in ("test_items", "val_items", "eval_items")}
    except Exception:
        return {}


def pricing_pipeline(path: Path) -> Path:
    fig, ax = _canvas(15.3, 6.0)
    ax.text(0.35, 5.8, "Pricing products: from listings to the leaderboard (notebooks 07-14)", fontsize=14, fontweight="bold", va="top", color=INK)
    orange, orange_edge = "#fdebd3", "#c05621"
    data_fc, data_ec = "#e2e8f0", "#4a5568"
    mid = 2.85
    w, h = 1.6, 1.3
    _box(ax, 0.35, mid - h / 2, w, h, "Raw listings", "Mercari (offline) or Amazon Reviews 2023 (Hub)", fc=data_fc, ec=data_ec)
    _box(ax, 2.35, mid - h / 2, w, h, "Items (07)", "curated, typed, prompt capped in tokens", fc=data_fc, ec=data_ec)
    _arrow(ax, (0.35 + w, mid), (2.35, mid), label="curate")
    # splits
    sizes = _split_sizes()
    sx, sw, sh = 4.35, 2.15, 2.7
    ax.add_patch(FancyBboxPatch((sx, mid - sh / 2), sw, sh, boxstyle="round,pad=0,rounding_size=0.08", fc=data_fc, ec=data_ec, lw=1.3))
    ax.text(sx + sw / 2, mid + sh / 2 - 0.1, "Splits (07)", ha="center", va="top", fontsize=10.5, fontweight="bold", color=INK)
    ax.text(sx + sw / 2, mid + sh / 2 - 0.36, "seeded, fixed", ha="center", va="top", fontsize=8.5, color=MUTED)
    parts = [
        ("train", "the rest", "#ffffff"),
        ("validation", f"{sizes['val_items']:,} items" if sizes else "", "#fefcbf"),
        ("test", f"{sizes['test_items']:,} items" if sizes else "", "#ffffff"),
        ("eval, in test", f"{sizes['eval_items']:,} items" if sizes else "", "#fed7d7"),
    ]
    for i, (name, size, fc) in enumerate(parts):
        y = mid + sh / 2 - 0.78 - i * 0.47
        ax.add_patch(Rectangle((sx + 0.12, y - 0.36), sw - 0.24, 0.38, fc=fc, ec=data_ec, lw=0.8))
        ax.text(sx + 0.2, y - 0.17, name, va="center", fontsize=9, fontweight="bold", color=INK)
        ax.text(sx + sw - 0.2, y - 0.17, size, va="center", ha="right", fontsize=8, color=MUTED)
    _arrow(ax, (2.35 + w, mid), (sx, mid), label="split")
    # the pricers, each Item -> float
    px, pw, ph = 7.05, 2.45, 0.9
    pricers = [
        ("Baselines (08)", "TF-IDF ridge to LightGBM, trained on the train split"),
        ("Frontier LLM (09)", "prompted, or fine-tuned (OpenAI job, TRL)"),
        ("QLoRA specialist (10, 11)", "a 4-bit base with a LoRA adapter"),
        ("RAG pricer (13)", "similar items from Chroma as context"),
    ]
    ys = [mid + 1.65 - i * 1.1 for i in range(len(pricers))]
    ax.text(px + pw / 2, ys[0] + ph / 2 + 0.12, "every pricer: Item \u2192 price", ha="center", va="bottom", fontsize=9, style="italic", color=MUTED)
    for y, (title, body) in zip(ys, pricers):
        _box(ax, px, y - ph / 2, pw, ph, title, body, fc=orange, ec=orange_edge, title_size=9.5, body_size=8.2)
        _arrow(ax, (sx + sw, mid), (px, y), color=MUTED, lw=1.0)
    # blend, ensemble, leaderboard
    bx, bw, bh = 10.0, 1.35, 1.3
    _box(ax, bx, mid - bh / 2, bw, bh, "Blend (14)", "weights fitted on validation", fc="#fefcbf", ec="#b7791f")
    for y in ys:
        _arrow(ax, (px + pw, y), (bx, mid), color=MUTED, lw=1.0)
    ex, ew = bx + bw + 0.4, 1.3
    _box(ax, ex, mid - bh / 2, ew, bh, "Ensemble", "one pricer made of the others", fc=orange, ec=orange_edge)
    _arrow(ax, (bx + bw, mid), (ex, mid))
    lx, lw = ex + ew + 0.4, 1.55
    _box(ax, lx, mid - bh / 2, lw, bh, "Leaderboard", "every pricer and the ensemble, scored on eval", fc="#fed7d7", ec="#c53030")
    _arrow(ax, (ex + ew, mid), (lx, mid))
    ax.text(0.35, 0.3,
            "Choices (weights, sizes, which inputs to blend) are made on validation items; the eval items are only reported. "
            "Every score goes to the results store.",
            fontsize=9, color=MUTED, va="bottom")
    return _save(fig, path)


# --- the leaderboard ------------------------------------------------------------------------------------
def default_results_dir() -> Path:
    """$COURSE_RESULTS (relative to the checkout) or results/, without creating it."""
    value = os.environ.get("COURSE_RESULTS", "").strip()
    if not value:
        return ROOT / "results"
    folder = Path(value).expanduser()
    return folder if folder.is_absolute() else ROOT / folder


def _latest_board(results_dir: Path, profile: str | None):
    """(profile, data_version, {split: board}) of the latest eval results, or None when there are none."""
    store = Path(results_dir) / "results.json"
    if not store.is_file():
        return None
    entries = json.loads(store.read_text())
    entries = entries.get("entries", []) if isinstance(entries, dict) else entries
    scored = [e for e in entries if e.get("split") == "eval" and (profile is None or e.get("profile") == profile)]
    if not scored:
        return None
    latest = max(scored, key=lambda e: e.get("recorded_at") or "")
    from course_utils.pricing import results

    saved = os.environ.get("COURSE_RESULTS")
    os.environ["COURSE_RESULTS"] = str(Path(results_dir).resolve())  # where the store's own reader looks
    try:
        boards = {}
        for split in ("eval", "eval_llm"):
            board = results.leaderboard(latest["profile"], split=split, data_version=latest["data_version"])
            if not board.empty:
                boards[split] = board
    finally:
        if saved is None:
            os.environ.pop("COURSE_RESULTS", None)
        else:
            os.environ["COURSE_RESULTS"] = saved
    return latest["profile"], latest["data_version"], boards


def _label_models(board):
    """Show which language model answered when the row's name does not say it."""
    board = board.copy()
    if "llm" in board.columns:
        board["model"] = [
            f"{m} [{llm}]" if isinstance(llm, str) and llm and llm not in m else m for m, llm in zip(board["model"], board["llm"])
        ]
    return board


def leaderboard(path: Path, results_dir: Path | None = None, profile: str | None = None) -> Path:
    results_dir = Path(results_dir) if results_dir else default_results_dir()
    found = _latest_board(results_dir, profile)
    if not found:
        fig, ax = _canvas(8.0, 2.6)
        ax.add_patch(FancyBboxPatch((0.3, 0.3), 7.4, 2.0, boxstyle="round,pad=0,rounding_size=0.1", fc="#f7fafc", ec="#a0aec0", lw=1.3, ls="--"))
        ax.text(4.0, 1.85, "Course leaderboard: no results yet", ha="center", va="center", fontsize=14, fontweight="bold", color=INK)
        ax.text(4.0, 1.05,
                "Run the pricing notebooks (08-14), or make course, then draw this chart\n"
                "from the results store: python scripts/make_figures.py --only leaderboard",
                ha="center", va="center", fontsize=10, color=MUTED, linespacing=1.5)
        return _save(fig, path)
    from course_utils.pricing.results import plot_leaderboard

    name, version, boards = found
    heights = [0.33 * len(b) + 0.9 for b in boards.values()]
    fig = Figure(figsize=(8.5, sum(heights) + 0.5), dpi=DPI)
    axes = fig.subplots(len(boards), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (split, board) in zip(axes, boards.items()):
        n_items = int(board["n_items"].max())
        title = f"every pricer, {n_items} eval items" if split == "eval" else f"chat pricers, the first {n_items} eval items ({split})"
        plot_leaderboard(_label_models(board), ax=ax, title=title)
        ax.title.set_fontsize(10.5)
        ax.tick_params(axis="y", labelsize=9)
    fig.suptitle(f"Course leaderboard ({name} profile, data {version})", fontsize=12.5, fontweight="bold")
    fig.tight_layout()
    return _save(fig, path)


# --- command line -------------------------------------------------------------------------------------
FIGURES = {
    "course_map": course_map,
    "price_tokens": price_tokens,
    "lora": lora,
    "rag_pipeline": rag_pipeline,
    "pricing_pipeline": pricing_pipeline,
    "leaderboard": leaderboard,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), help="draw only this figure (repeatable)")
    parser.add_argument("--out", type=Path, default=IMG, help="folder for the PNGs (default: img/)")
    parser.add_argument("--results", type=Path, default=None, help="results folder for the leaderboard (default: $COURSE_RESULTS or results/)")
    parser.add_argument("--profile", default=None, help="leaderboard of this profile (default: the one scored last)")
    args = parser.parse_args(argv)
    for name in args.only or FIGURES:
        target = args.out / f"{name}.png"
        if name == "leaderboard":
            leaderboard(target, args.results, args.profile)
        else:
            FIGURES[name](target)
        print(f"{target.relative_to(ROOT) if target.resolve().is_relative_to(ROOT) else target}  {target.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
