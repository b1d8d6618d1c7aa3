"""Who acts: API keys and their roles."""
