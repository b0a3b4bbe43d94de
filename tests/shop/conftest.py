import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # the production hasher costs ~1 s per user on a 2-core box; tests only need it to round-trip
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
