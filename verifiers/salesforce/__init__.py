"""Checks against Salesforce: invoices."""
