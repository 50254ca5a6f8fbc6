"""Belofte's HTTP API (``/api/v1``), documented by OpenAPI at ``/docs``."""
