"""Engines: the work behind the services (DESIGN section 4). `rules` is offline, `llm` any OpenAI-compatible model."""
