"""Planners: the deterministic rules tier. The model tiers are in app/llm/ (configured in
config/models.yaml); app/planning.py tries the rules tier first, then them."""
