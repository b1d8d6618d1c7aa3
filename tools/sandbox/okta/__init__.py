"""The sandbox's Okta API."""
