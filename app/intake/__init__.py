"""Submissions, from the API or the webhooks of Zendesk and Salesforce, and the
workflows they may name."""
