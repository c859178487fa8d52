"""The course's pricers behind one `Item -> float` interface (notebook 16), rebuilt from what notebooks 08-14 saved.

A missing artefact is a `MissingArtifactError` whose message names the notebook to run. The baseline stack and the
capped prompts are the pricer service's (notebook 15): the same fitted stack, the same listing text.
"""

from __future__ import annotations

import time
from typing import Callable

from ..core import config
from ..pricing.items import Item
from ..serving.served import MissingArtifactError
from .feed import DealEntry

PRICERS = {  # name: (what it is, the notebook that makes what it loads)
    "baseline": ("notebook 08's baseline stack (ridge, SVR, LightGBM, neural nets), refitted and cached", "08_baselines.ipynb"),
    "specialist": ("the QLoRA fine-tuned model (adapter of notebook 10)", "10_qlora.ipynb"),
    "rag": ("the RAG pricer (notebook 13's Chroma store + the profile's bulk model)", "13_rag_pricer.ipynb"),
    "forest": ("the random forest on the store's embeddings", "13_rag_pricer.ipynb"),
    "ensemble": ("notebook 14's blend of the four, weights fitted on ensemble_val", "14_ensemble.ipynb"),
}


def _product_store(profile: config.Profile):
    from ..retrieval.vectorstore import ProductStore, store_path

    if not store_path(profile).is_dir():
        raise MissingArtifactError(f"no product store at {store_path(profile)}; run notebooks/13_rag_pricer.ipynb (profile {profile.name}) first")
    store = ProductStore(profile)
    if store.count() == 0:
        raise MissingArtifactError(f"the product store at {store.path} is empty; run notebooks/13_rag_pricer.ipynb (profile {profile.name}) first")
    return store


def _specialist(profile: config.Profile, mode: str = "greedy"):
    from ..foundations.models import load_tokenizer
    from ..pricing import qlora
    from ..pricing.specialist import SpecialistPricer

    try:
        model = qlora.load_finetuned(profile)
    except FileNotFoundError as exc:
        raise MissingArtifactError(f"{exc} (notebooks/10_qlora.ipynb, profile {profile.name})") from None
    return SpecialistPricer(model, load_tokenizer("base_model", profile), mode=mode)


class PricerBank:
    """The course's pricers by name, each loaded on first use and kept; `price(name, entry)` is the one tool.

    Items are built from the feed entry with the same capped prompt as the training data (the chat model's
    tokenizer, `max_tokens_prompt`), so a pricer reads a feed listing as it read its training listings."""

    def __init__(self, profile: config.Profile | None = None):
        self.profile = profile or config.get_profile()
        self._pricers: dict[str, Callable[[Item], float]] = {}
        self.load_seconds: dict[str, float] = {}

    def item(self, entry: DealEntry) -> Item:
        from ..serving.served import with_capped_prompts

        return with_capped_prompts([entry.as_item()], self.profile)[0]

    def pricer(self, name: str) -> Callable[[Item], float]:
        if name not in PRICERS:
            raise ValueError(f"unknown pricer {name!r}; choose one of {', '.join(PRICERS)}")
        if name not in self._pricers:
            started = time.perf_counter()
            self._pricers[name] = self._load(name)
            self.load_seconds[name] = round(time.perf_counter() - started, 1)
        return self._pricers[name]

    def _load(self, name: str) -> Callable[[Item], float]:
        profile = self.profile
        if name == "baseline":
            from ..serving.pricers import fitted_baseline_stack

            return fitted_baseline_stack(profile)
        if name == "specialist":
            return _specialist(profile)
        if name == "rag":
            from ..chat.llm import get_backend
            from ..pricing.rag_pricer import RAGPricer

            return RAGPricer(_product_store(profile), get_backend(model=profile.bulk_model), k=5)
        if name == "forest":
            from ..pricing.rag_pricer import EmbeddingForest

            return EmbeddingForest(_product_store(profile), seed=profile.seed).fit()
        return self._ensemble()

    def _ensemble(self) -> Callable[[Item], float]:
        from ..pricing import ensemble, results

        if not results.list_predictions(ensemble.FIT_SPLIT, self.profile):  # say so before loading any data
            raise MissingArtifactError(
                f"no stored predictions on {ensemble.FIT_SPLIT!r} for profile {self.profile.name}: run notebooks/08_baselines.ipynb, "
                "10_qlora.ipynb, 11_evaluating_the_finetune.ipynb and 13_rag_pricer.ipynb, then 14_ensemble.ipynb"
            )
        try:
            blend = ensemble.fit_ensemble(self.profile)
        except ensemble.MissingInputError as exc:
            raise MissingArtifactError(f"{exc}\nthen notebooks/14_ensemble.ipynb") from None
        inputs = {}
        for role, model in blend.models.items():
            if role == "specialist":
                inputs[role] = _specialist(self.profile, "weighted" if model.endswith("weighted") else "greedy")
            else:
                inputs[role] = self.pricer(role)

        def blended(item: Item) -> float:
            return float(blend.predict([[inputs[role](item) for role in blend.roles]])[0])

        blended.blend = blend  # the weights, for a notebook to show
        return blended

    def price(self, name: str, entry: DealEntry) -> float:
        return float(self.pricer(name)(self.item(entry)))
