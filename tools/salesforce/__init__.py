"""Salesforce: the REST client and its error mapping."""
