"""Who acts: API keys, their roles and workflow scopes, and what each may see."""
