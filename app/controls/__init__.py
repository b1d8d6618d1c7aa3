"""The gates every call passes: policy, approvals, kill switch, breaker, rate
limit, daily caps, model budget, and the call recorder that applies them."""
