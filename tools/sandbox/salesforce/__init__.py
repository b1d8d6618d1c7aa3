"""The sandbox's Salesforce API: routes, sObject model, SOQL."""
