"""Serving the bot over HTTP: batched replies, cached states, an OpenAI-compatible API,
native conversations and a web page (`chatbot serve`)."""
