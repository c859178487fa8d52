"""The fine-tuned specialist behind the OpenAI-compatible API (notebook 15): its LoRA adapter merged and written
as a GGUF file, served by the course's llama.cpp server, and read the way notebook 11 reads it.

The prompt is the fine-tuning chat up to "Price is $" (`specialist.prompt_text`), so a plain completion
continues with the digits. The completion is read with the course's price parser (`prices.parse_price`),
in whole dollars, as the in-process specialist reads its digits; the first-token candidates of the weighted
reading are the tokenizer's number tokens that may start a price, as there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core import config
from ..pricing.items import Item
from ..pricing.prices import parse_price
from .served import ServedPricer, missing, service_dir, with_capped_prompts


def export_specialist_gguf(profile: config.Profile | None = None, out_type: str = "F16", progress: bool = True) -> Path:
    """Notebook 10's adapter merged into the base model and written as a GGUF file (once; then reused).

    Offline the base model *is* a GGUF file, so the new file copies its metadata (architecture, tokenizer,
    chat template) and replaces every tensor with the merged weights. llama.cpp stores the query and key
    projections with their rows interleaved for its rotary embedding: transformers undid that when it
    loaded the GGUF, so it is redone here. The Hub profiles use llama.cpp's own converter (deploy/README.md).
    """
    import hashlib

    import gguf
    import numpy as np

    from ..foundations.models import gguf_path
    from ..pricing import qlora

    profile = profile or config.get_profile()
    adapter = qlora.adapter_dir(profile)
    weights = next((adapter / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (adapter / n).is_file()), None)
    if weights is None:
        raise missing("specialist", f"the LoRA adapter in {adapter}", profile)
    if not profile.base_model.offline:
        raise NotImplementedError(
            f"profile {profile.name!r} fine-tunes a Hub model: merge it (qlora.load_finetuned) and convert it with llama.cpp's "
            "convert_hf_to_gguf.py as deploy/README.md shows, or serve it with vLLM and --enable-lora"
        )
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    target = service_dir(profile) / f"specialist-{digest}-{out_type.lower()}.gguf"
    if target.is_file():
        return target

    model = qlora.load_finetuned(profile, quantized=False)  # merge_and_unload(): plain weights again
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    reader = gguf.GGUFReader(gguf_path(profile.base_model))
    arch_name = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    by_gguf = {}
    for hf_name, array in state.items():
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            continue
        heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}
        for proj, n_head in heads.items():
            if f".{proj}." in hf_name:  # llama.cpp's row order for rotary embeddings
                array = array.reshape(n_head, 2, array.shape[0] // n_head // 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)
        by_gguf[new] = array
    absent = [t.name for t in reader.tensors if t.name not in by_gguf]
    if absent:
        raise ValueError(f"the merged model has no weights for GGUF tensors {absent[:5]}: is it the base model's architecture?")

    tmp = target.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    for f in reader.fields.values():
        if f.name in (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE, gguf.Keys.General.NAME) or f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        writer.add_key_value(f.name, f.contents(), kind, sub_type=f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    f16 = out_type.upper() == "F16"
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_string(gguf.Keys.General.NAME, f"{profile.base_model.short_name} + qlora-pricer (merged)")
    for t in reader.tensors:
        array = by_gguf[t.name]
        # 1-D tensors (norms) stay fp32, as llama.cpp's converter keeps them
        writer.add_tensor(t.name, array.astype(np.float16 if f16 and array.ndim > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=progress)
    writer.close()
    os.replace(tmp, target)
    return target


def whole_dollars(text: str) -> float | None:
    """The price a completion after "Price is $" states, in whole dollars ("129.00" -> 129), or None.

    The in-process specialist stops at the first token that is not digits, so it reads whole dollars too."""
    value = parse_price(text)
    return float(int(value)) if value is not None and value >= 1 else None


def top_logprobs(logprobs) -> list[tuple[str, float]]:
    """[(token text, log probability)] of the first generated position, most likely first.

    llama-server answers in the chat format (`content[0].top_logprobs`), llama-cpp-python's server in the
    legacy completions format (`top_logprobs[0]`, a {token: logprob} dict); both are read.
    """
    content = getattr(logprobs, "content", None) or (logprobs.get("content") if isinstance(logprobs, dict) else None)
    if content:
        first = content[0]
        tops = first["top_logprobs"] if isinstance(first, dict) else first.top_logprobs
        pairs = [(t["token"], t["logprob"]) if isinstance(t, dict) else (t.token, t.logprob) for t in tops]
    else:
        legacy = getattr(logprobs, "top_logprobs", None) or []
        pairs = list(legacy[0].items()) if legacy else []
    return sorted(pairs, key=lambda pair: -pair[1])


@dataclass
class SpecialistServer:
    """The merged specialist in the course's llama.cpp server, called with the `openai` client.

    `mode="greedy"` is one completion a listing. `mode="weighted"` is notebook 11's probability-weighted
    reading over the server's answers: one call for the first token's top log-probabilities, then one
    greedy completion for each of the `top_k` number tokens among them, averaged on log(1 + price).
    """

    server: object  # llm.LocalServer
    client: object  # openai.OpenAI
    tokenizer: object
    fallback: float  # the training median, for the rare answer with no number
    mode: str = "greedy"
    top_k: int = 5
    max_digits: int = 5
    no_number: int = 0
    profile: config.Profile | None = None  # set: listings' texts are capped in tokens first, as curation does

    def _complete(self, prompt: str, **kwargs):
        return self.client.completions.create(model=self.server.alias, prompt=prompt, temperature=0, **kwargs).choices[0]

    def price(self, item: Item) -> float:
        from ..pricing.specialist import prompt_text

        # The prompt already holds the chat template and "Price is $", so a plain completion continues with the digits.
        prompt = prompt_text(self.tokenizer, item)
        if self.mode == "greedy":
            value = whole_dollars(self._complete(prompt, max_tokens=self.max_digits).text)
        else:
            value = self.weighted(prompt)
        if value is None:
            self.no_number += 1
            return self.fallback
        return value

    def weighted(self, prompt: str) -> float | None:
        from ..pricing.specialist import number_tokens, weighted_log_price

        digit_text, start_ids = number_tokens(self.tokenizer)
        may_start = {digit_text[i] for i in start_ids}
        first = self._complete(prompt, max_tokens=1, logprobs=max(20, 4 * self.top_k))  # more than k: some are not numbers
        starts = [(t, lp) for t, lp in top_logprobs(first.logprobs) if t in may_start][: self.top_k]
        candidates = []
        for token, logprob in starts:
            left = self.max_digits - len(token)
            value = whole_dollars(token + (self._complete(prompt + token, max_tokens=left).text if left > 0 else ""))
            candidates.append((value, math.exp(logprob)))
        return weighted_log_price(candidates) if candidates else None

    def price_many(self, items: Sequence[Item]) -> list[float]:
        if self.profile is not None:
            items = with_capped_prompts(items, self.profile)
        return [self.price(it) for it in items]


def best_specialist_reading(profile: config.Profile) -> str:
    """The reading (greedy or weighted) with the lower RMSLE on ensemble_val in the results store, as notebook 11 picks
    it on validation items; greedy when neither is stored."""
    from ..pricing import results

    frame = results.load_results(profile)
    if frame.empty:
        return "greedy"
    rows = frame[(frame["split"] == "ensemble_val") & frame["model"].isin(["qlora-specialist-greedy", "qlora-specialist-weighted"])]
    return str(rows.sort_values("rmsle").iloc[0]["model"]).rsplit("-", 1)[1] if len(rows) else "greedy"


def start_specialist_server(profile: config.Profile | None = None, slots: int | None = None, mode: str | None = None) -> SpecialistServer:
    """Export the specialist GGUF (once), serve it with `llm.LocalServer`, and point an `openai` client at it."""
    import numpy as np
    from openai import OpenAI

    from ..chat.llm import LocalServer
    from ..foundations import models
    from ..pricing import data, training

    profile = profile or config.get_profile()
    path = export_specialist_gguf(profile, progress=False)
    # the GGUF's own chat template is not used: the prompt is rendered here, as in notebook 11
    server = LocalServer(path, alias="qlora-specialist", slots=slots, n_ctx=1024).start()
    client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=60)
    tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
    median = float(np.median([it.price for it in data.load_splits(profile).train]))
    mode = mode or best_specialist_reading(profile)
    served = SpecialistServer(server, client, tokenizer, median, mode=mode, top_k=profile.size("price_top_k"), profile=profile)
    _SPECIALIST_SERVERS.append(served)
    return served


_SPECIALIST_SERVERS: list[SpecialistServer] = []  # what stop_model_servers stops


SPECIALIST_SLOTS = 4  # llama-server slots: each keeps its own prompt cache, so concurrent clients do not evict each other's


def specialist_pricer(profile: config.Profile | None = None, mode: str | None = None, slots: int = SPECIALIST_SLOTS) -> ServedPricer:
    """The GGUF specialist with `slots` parallel slots: the weighted reading's k follow-up calls reuse the prompt
    a slot has just read, which with one slot and several clients is evicted by the other clients' prompts."""
    served = start_specialist_server(profile, mode=mode, slots=slots)
    return ServedPricer("specialist", f"qlora-specialist-{served.mode} (GGUF, llama.cpp)", served.price_many,
                        {"kind": "fine-tuned", "reading": served.mode, "server": served.server.kind, "gguf": served.server.model_path.name}, served)  # fmt: skip


def stop_specialist_servers() -> None:
    """Stop the llama.cpp servers `start_specialist_server` started in this process."""
    for served in _SPECIALIST_SERVERS:
        served.server.stop()
    _SPECIALIST_SERVERS.clear()
