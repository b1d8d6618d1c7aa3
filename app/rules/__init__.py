"""The deterministic rules tier: one planner per workflow (refunds, invoices, access), each
declared by its workflow's module (app/workflows/). The model tiers are in app/llm/
(configured in config/models.yaml); app/stages/plan.py tries the rules tier first, then them."""
