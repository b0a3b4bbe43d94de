import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # the production hasher costs ~1 s per user on a 2-core box; tests only need it to round-trip
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    # the category tree, rail candidates and fragments, and throttle buckets live in the cache;
    # each test builds its own catalog and starts with empty buckets
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_running_experiment():
    # each process caches the running experiment; a test's rolled-back experiment must not leak into the next
    from shop.experiments.selectors import running_experiment_forget

    running_experiment_forget()
    yield
    running_experiment_forget()
