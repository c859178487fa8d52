"""Part 4, serving: the pricer as a FastAPI web service."""
