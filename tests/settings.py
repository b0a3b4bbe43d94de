"""Settings for the test suite: the shop's safe defaults plus a throwaway key.

The key goes into the environment, so servers and workers that tests start as subprocesses
(gunicorn, celery) share it and can read each other's signed cookies.
"""

import atexit
import os
import secrets
import shutil
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(40))
# Tasks the tests send through the embedded (filesystem) broker go to this session's own folder, shared with
# the servers and workers it starts; in var/broker a later `make demo`'s worker would pick them up.
if "BROKER_DIR" not in os.environ:
    os.environ["BROKER_DIR"] = tempfile.mkdtemp(prefix="shop-test-broker-")
    atexit.register(shutil.rmtree, os.environ["BROKER_DIR"], ignore_errors=True)

from shop.settings import *  # noqa: E402, F403

# `make demo` collects the static files into STATIC_ROOT; a fresh clone's tests never do, and WhiteNoise warned at
# every handler it built that the folder was missing (570 of a fresh clone's 577 warnings).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

# The test process loads a serving model only where a test asks for it (shop.recs.serving), never from a
# loader thread that would poll the database between tests.
RECS_SERVING_LOAD = False
# ... and builds it in the test's own process (a first build apart would start a fork server, which imports torch
# again); the child path has its own tests (tests/shop/test_recs_build_apart.py), and the servers tests start use it.
RECS_SERVING_BUILD_APART = False
