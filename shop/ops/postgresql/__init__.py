"""Django's PostgreSQL backend with a per-request connection check that costs no round trip (see ``base``)."""
