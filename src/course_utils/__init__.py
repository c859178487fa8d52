"""Shared code for the LLM Engineering course notebooks.

Each module holds one concept: `config` (profiles), `models` (loading), `llm` (the
OpenAI-compatible client and the local server), `secrets`, `doctor`, and the modules
later notebooks add. Notebooks start with `from course_utils import start`.
"""

from .core.start import start

__all__ = ["start"]
__version__ = "0.1.0"
