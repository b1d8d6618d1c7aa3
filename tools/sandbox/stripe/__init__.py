"""The sandbox's Stripe API."""
