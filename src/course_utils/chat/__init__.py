"""Part 2, chat: the OpenAI-compatible backend and the local llama.cpp server, messages, structured output, tools, the response cache and app helpers."""
