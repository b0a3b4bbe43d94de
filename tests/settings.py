"""Settings for the test suite: the shop's safe defaults plus a throwaway key.

The key goes into the environment, so servers and workers that tests start as subprocesses
(gunicorn, celery) share it and can read each other's signed cookies.
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(40))

from shop.settings import *  # noqa: E402, F403

# The test process loads a serving model only where a test asks for it (shop.recs.serving), never from a
# loader thread that would poll the database between tests.
RECS_SERVING_LOAD = False
