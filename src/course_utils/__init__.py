"""Shared code for the LLM Engineering course notebooks, one folder per course part.

`core` (profiles, paths, secrets, the first cell), `foundations` (models, listings, tokens,
pipelines, quantization), `chat` (the backend, conversations, structured output, tools),
`retrieval` (embeddings, the knowledge base, RAG, the product store), `pricing` (items to
ensemble), `serving` (the web service) and `agents` (the deal agents and their MCP server).
Notebooks start with `from course_utils import start`.
"""

from .core.start import start

__all__ = ["start"]
__version__ = "0.1.0"
