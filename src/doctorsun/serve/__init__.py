"""Serving: terminal chat, OpenAI-compatible API, web UI, import/export."""
