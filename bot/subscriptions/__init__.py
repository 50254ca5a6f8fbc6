"""Customers asking to be told when an outage is fixed."""
