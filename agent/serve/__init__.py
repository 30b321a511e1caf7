"""`agent serve`: a local model behind OpenAI-compatible HTTP routes, with dynamic batching."""
