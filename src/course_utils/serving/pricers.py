"""The service's pricers, rebuilt from what notebooks 07-14 saved (notebook 15).

    baseline     notebook 08's baseline stack, refitted with the same seed (notebook 08 stores its
                 scores and predictions, not the fitted model) and kept with joblib
    specialist   notebook 10's LoRA adapter merged into the base model, written as a GGUF and served by
                 the course's llama.cpp server (`specialist_server`)
    rag          notebook 13's Chroma store and the chat model (`rag_pricer.RAGPricer`)
    ensemble     notebook 14's blend weights (in the results store) over the four inputs above,
                 with notebook 13's embedding forest refitted on the stored vectors
    median       the training median (notebook 08's constant baseline): needs only the data, so it is
                 what tests and smoke checks start

A missing artefact raises `MissingArtifactError`, naming the notebook to run.
"""

from __future__ import annotations

import json
import threading
from typing import Sequence

from ..core import config
from ..pricing.items import Item
from .served import PRICERS, ServedPricer, missing, service_dir, with_capped_prompts
from .specialist_server import specialist_pricer, stop_specialist_servers


def _stored_models(profile: config.Profile, split: str = "eval") -> list[str]:
    from ..pricing import results

    frame = results.load_results(profile)
    return list(frame[frame["split"] == split]["model"]) if not frame.empty else []


def fitted_baseline_stack(profile: config.Profile | None = None):
    """Notebook 08's best baseline, fitted as notebook 08 fits it (same seed and items), kept with joblib under
    the data version: the service and the deal agents (notebook 16) load the same file."""
    import joblib

    from ..core.storage import atomic_write
    from ..pricing import baseline_stack, data

    profile = profile or config.get_profile()
    path = service_dir(profile) / f"baseline-stack-{data.data_version(profile)}.joblib"
    if path.is_file():
        return joblib.load(path)
    stack = baseline_stack.all_baselines(seed=profile.seed, holdout=data.baseline_val_set(profile))[-1]
    stack.fit(data.load_splits(profile).train)
    atomic_write(path, lambda tmp: joblib.dump(stack, tmp))
    return stack


def baseline_pricer(profile: config.Profile | None = None) -> ServedPricer:
    """Notebook 08's baseline stack, once notebook 08 has scored it."""
    from ..pricing import baseline_stack

    profile = profile or config.get_profile()
    if baseline_stack.BEST_BASELINE not in _stored_models(profile):
        raise missing("baseline", f"the scores of {baseline_stack.BEST_BASELINE!r} in the results store", profile)
    stack = fitted_baseline_stack(profile)
    lock = threading.Lock()  # its features cache is a plain dict: one prediction at a time

    def price_many(items):
        with lock:
            return stack.predict(items)

    return ServedPricer("baseline", stack.name, price_many, {"kind": "baseline", "members": len(stack.members)}, stack, batchable=True)


def rag_pricer(profile: config.Profile | None = None, use_cache: bool = True):
    """Notebook 13's RAG pricer over its Chroma store; the store must hold listings."""
    from ..chat.llm import get_backend
    from ..pricing.rag_pricer import RAGPricer
    from ..retrieval.vectorstore import ProductStore

    profile = profile or config.get_profile()
    store = ProductStore(profile)
    if store.count() == 0:
        raise missing("rag", f"the product store at {store.path}", profile)
    pricer = RAGPricer(store, get_backend(model=profile.bulk_model), k=5, use_cache=use_cache)
    return ServedPricer("rag", pricer.name, lambda items: pricer.price_many(with_capped_prompts(items, profile), progress=False),
                        {"kind": "rag", "llm": pricer.backend.model, "listings": store.count()}, pricer)  # fmt: skip


def stored_ensemble(profile: config.Profile):
    """Notebook 14's fitted blend, read back from its entry in the results store."""
    from ..pricing import results
    from ..pricing.ensemble import ENSEMBLE_NAME, Ensemble

    entries = json.loads(results.results_path().read_text()).get("entries", []) if results.results_path().is_file() else []
    mine = [e for e in entries if e.get("model") == ENSEMBLE_NAME and e.get("profile") == profile.name and e.get("split") == "eval"]
    if not mine or "weights" not in mine[-1].get("extra", {}):
        raise missing("ensemble", "the fitted blend (its weights in the results store)", profile)
    extra = mine[-1]["extra"]
    return Ensemble(dict(extra["inputs"]), dict(extra["weights"]), float(extra["intercept"]))


def ensemble_pricer(profile: config.Profile | None = None, parts: dict | None = None) -> ServedPricer:
    """The blend over live inputs: the specialist, the RAG pricer, the embedding forest and the baseline stack."""
    from ..pricing.rag_pricer import EmbeddingForest

    profile = profile or config.get_profile()
    blend = stored_ensemble(profile)
    parts = dict(parts or {})
    if "specialist" not in parts:
        parts["specialist"] = specialist_pricer(profile)
    if "rag" not in parts:
        parts["rag"] = rag_pricer(profile)
    if "baseline" not in parts:
        parts["baseline"] = baseline_pricer(profile)
    store = parts["rag"].source.store
    forest = EmbeddingForest(store, seed=profile.seed).fit()
    parts["forest"] = ServedPricer("forest", forest.name, lambda items: forest.predict_many(with_capped_prompts(items, profile)))
    unknown = [role for role in blend.roles if role not in parts]
    if unknown:
        raise missing("ensemble", f"inputs {unknown} this service cannot rebuild", profile)

    # One listing at a time: each input is already as fast as the cores allow, and two requests in flight would
    # run two model servers and the embedding model at once on the same cores, each spinning its own threads.
    lock = threading.Lock()

    def price_many(items):
        with lock:
            items = with_capped_prompts(items, profile)
            columns = [list(parts[role].price_many(items)) for role in blend.roles]
        return list(blend.predict([list(row) for row in zip(*columns)]))

    return ServedPricer("ensemble", "ensemble", price_many, {"kind": "ensemble", "inputs": blend.models, "weights": blend.weights})


def median_pricer(profile: config.Profile | None = None) -> ServedPricer:
    """The training split's median price for every listing: the floor any pricer must beat."""
    import numpy as np

    from ..pricing import data

    median = float(np.median([it.price for it in data.load_splits(profile or config.get_profile()).train]))
    return ServedPricer("median", "constant median", lambda items: [median] * len(items), {"kind": "baseline", "price": median}, batchable=True)


def load_pricers(keys: Sequence[str], profile: config.Profile | None = None) -> list[ServedPricer]:
    """The named pricers, built once each (the ensemble reuses the others when they are loaded too)."""
    profile = profile or config.get_profile()
    unknown = [k for k in keys if k not in PRICERS]
    if unknown or not keys:
        raise ValueError(f"unknown pricers {unknown or keys}; choose from {', '.join(PRICERS)}")
    built: dict[str, ServedPricer] = {}
    for key in sorted(keys, key=lambda k: k == "ensemble"):  # the ensemble last: it reuses the others
        if key == "baseline":
            built[key] = baseline_pricer(profile)
        elif key == "specialist":
            built[key] = specialist_pricer(profile)
        elif key == "rag":
            built[key] = rag_pricer(profile)
        elif key == "median":
            built[key] = median_pricer(profile)
        else:
            built[key] = ensemble_pricer(profile, parts=built)
    # Warm-up: a first call loads what loads lazily (the embedding model, the servers' first prompt), so the
    # service answers /health only when every pricer answers at its usual speed.
    warm = Item(id="warm-up", title="Warm-up listing", description="", price=1.0)
    for pricer in built.values():
        pricer.price_many([warm])
    return [built[k] for k in keys]


def stop_model_servers() -> None:
    """Stop every llama.cpp server this process started: the specialists' and the chat model's."""
    from ..chat.llm import stop_local_server

    stop_specialist_servers()
    stop_local_server()
