"""What the pricer service serves: a `ServedPricer` (a name, a model, `price_many`), and where its artefacts live.

The service's pricers are rebuilt from what notebooks 07-14 saved; `MissingArtifactError` names the notebook
to run when something is not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..core import config
from ..pricing.items import Item

PRICERS = ("baseline", "specialist", "rag", "ensemble", "median")
NOTEBOOKS = {
    "median": "07_product_data.ipynb",
    "baseline": "08_baselines.ipynb",
    "specialist": "10_qlora.ipynb (then 11_evaluating_the_finetune.ipynb)",
    "rag": "13_rag_pricer.ipynb",
    "ensemble": "14_ensemble.ipynb",
}


class MissingArtifactError(FileNotFoundError):
    """Something a pricer is rebuilt from is not there; the message names the notebook that makes it."""


def missing(pricer: str, what: str, profile: config.Profile) -> MissingArtifactError:
    """The error for a pricer whose artefact `what` is missing: it names the notebook to run."""
    return MissingArtifactError(
        f"the {pricer} pricer needs {what}, which is missing for profile {profile.name!r}: "
        f"run notebooks/{NOTEBOOKS[pricer]} (COURSE_PROFILE={profile.name}) first"
    )


@dataclass
class ServedPricer:
    """A pricer the app serves: `price_many(items) -> prices`, under a display name."""

    key: str
    model: str
    price_many: Callable[[list[Item]], Sequence[float]]
    info: dict = field(default_factory=dict)
    source: object = None  # the pricer object behind it, when a caller wants more than prices
    batchable: bool = False  # vectorised: one call for many listings costs little more than for one


_TOKENIZERS: dict[str, object] = {}


def with_capped_prompts(items: Sequence[Item], profile: config.Profile) -> list[Item]:
    """The items with their model text capped in tokens, as curation caps every listing (notebook 07): the LLM
    pricers and the embeddings read `item.text`, and they must see what they saw on the stored splits."""
    from ..foundations.models import load_tokenizer
    from ..pricing.data import with_prompts

    if profile.name not in _TOKENIZERS:
        _TOKENIZERS[profile.name] = load_tokenizer("chat_model", profile)
    return with_prompts(list(items), _TOKENIZERS[profile.name], profile.size("max_tokens_prompt"))


def service_dir(profile: config.Profile) -> Path:
    path = profile.work_dir / "service"
    path.mkdir(parents=True, exist_ok=True)
    return path
