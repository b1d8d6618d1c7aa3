"""The sandbox's Zendesk API."""
