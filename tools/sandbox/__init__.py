"""Local sandbox emulating the APIs opsgate writes to: Stripe, Zendesk, Salesforce, Okta."""
