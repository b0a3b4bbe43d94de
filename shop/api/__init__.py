"""Shared bits of the REST API: parsers, throttles, pagination and errors."""
