"""The model side of planning: tiers and router, client, prompt, retrieval, cache, budget."""
