"""Planners: the deterministic rules tier. The model tiers are in app/llm/ (configured in
config/models.yaml); app/stages/plan.py tries the rules tier first, then them."""
