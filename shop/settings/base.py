"""Settings read from the environment (12-factor, django-environ).

Every value has a safe embedded default so ``make demo`` runs with no service installed:
SQLite under ``var/`` (WAL mode) and a filesystem Celery broker.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

# Safe by default for every entry point (manage.py, gunicorn, celery): DEBUG is opt-in (the demo
# turns it on) and there is no published key. `make demo` generates one into var/dev-secret-key.
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Put one in the environment or in .env, e.g. "
        "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'); "
        "`make demo` generates one for you (var/dev-secret-key)."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# No script reads the CSRF cookie (forms carry the token, API clients read their cookie jar): keep it from scripts.
CSRF_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",  # the merchant console's staff tokens (POST /api/auth/token)
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally, no CDN
    "shop.catalog",
    "shop.events",
    "shop.orders",
    "shop.accounts",
    "shop.recs",
    "shop.experiments",
    "shop.ops",  # /healthz, /readyz, /metrics; worker heartbeat and task timings
    # the Celery app, loaded at start-up: the shop sends tasks by name through it, never importing them
    "worker",
]

MIDDLEWARE = [
    "shop.ops.middleware.RequestMetricsMiddleware",  # request latency per view: first, so it times the rest
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "shop.events.middleware.VisitorMiddleware",
    "shop.catalog.cart_hint.CartHintMiddleware",
    "shop.api.middleware.SingleValuedQueryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "shop" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.catalog.context_processors.storefront",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'shop.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; a busy timeout instead of "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
    # The events' covering indexes carry extra columns on PostgreSQL only; SQLite builds the same
    # keys without them, which is all it needs.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # the same backend, whose per-request connection check asks the socket before sending a SELECT 1
        DATABASES["default"]["ENGINE"] = "shop.ops.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:account"
LOGOUT_REDIRECT_URL = "catalog:home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "shop" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
# Entries one process's local-memory cache holds before it drops a third of them. Django's default (300)
# is smaller than one catalog's shared lists (a category page's list, its popular and new rails: 176
# categories x 3 in the seeded catalog, more with other sorts, searches and throttle buckets), so at
# that size the lists pushed each other out and nearly every category page read one again. A list holds at
# most LIST_CACHED_IDS ids and a throttle bucket one timestamp per request in its window, so what the cache
# holds is bounded by the catalog and the last window's traffic, not by this count alone.
CACHE_MAX_ENTRIES = env.int("CACHE_MAX_ENTRIES", default=20_000)
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache":
    if CACHE_MAX_ENTRIES < 1:
        raise ImproperlyConfigured(f"CACHE_MAX_ENTRIES must be at least 1, got {CACHE_MAX_ENTRIES}")
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", CACHE_MAX_ENTRIES)
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Redis down: reads miss and writes drop (logged, counted) instead of failing the page; the breaker keeps
    # each request from waiting for a connect timeout (shop.cache).
    CACHES["default"]["BACKEND"] = "shop.cache.DegradingRedisCache"
    CACHES["default"].setdefault("OPTIONS", {}).update(
        {
            "socket_connect_timeout": env.float("CACHE_CONNECT_TIMEOUT_S", default=0.25),
            "socket_timeout": env.float("CACHE_TIMEOUT_S", default=0.5),
            "BREAKER_S": env.float("CACHE_BREAKER_S", default=2.0),
        }
    )

# --- Interaction log / ingest limits (named so tests and docs can refer to them) ---
EVENTS_MAX_BATCH = env.int("EVENTS_MAX_BATCH", default=500)
EVENTS_MAX_BODY_BYTES = env.int("EVENTS_MAX_BODY_BYTES", default=1_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(EVENTS_MAX_BODY_BYTES * 2, 2_621_440)
VISITOR_COOKIE = "vid"
VISITOR_COOKIE_MAX_AGE = 60 * 60 * 24 * 365
# "this browser's cart may have lines": pages of an anonymous visitor without it skip the cart read
CART_HINT_COOKIE = "cart_hint"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "shop.api.schema.ShopAutoSchema",  # documents 400/401/403/404/413/415/429/503
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 24,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",  # the merchant console (staff only)
    ],
    # Deny by default: an endpoint that forgets its permission is staff-only, never public.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PARSER_CLASSES": ["shop.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "shop.api.exceptions.api_exception_handler",
    # Proxies in front of gunicorn whose X-Forwarded-For is believed for per-address throttles (0: none).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_THROTTLE_RATES": {
        "events": env.str("EVENTS_THROTTLE_RATE", default="6000/min"),
        "events_ip": env.str("EVENTS_IP_THROTTLE_RATE", default="12000/min"),
        "cart": env.str("CART_THROTTLE_RATE", default="600/min"),
        "cart_ip": env.str("CART_IP_THROTTLE_RATE", default="3000/min"),
        "login": env.str("LOGIN_THROTTLE_RATE", default="10/min"),  # storefront log-in attempts per address
        "auth_token": env.str("AUTH_TOKEN_THROTTLE_RATE", default="10/min"),  # password guesses per address
        # GET /api/recommendations (staff exempt): per visitor, and per address whatever the cookies say
        "recs": env.str("RECS_THROTTLE_RATE", default="120/min"),
        "recs_ip": env.str("RECS_IP_THROTTLE_RATE", default="3000/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Storefront API",
    "DESCRIPTION": "Catalog, cart and interaction-log API of the DLRM storefront.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"ClientEventTypeEnum": "shop.events.models.CLIENT_EVENT_CHOICES"},
}

# (kombu warns "No hostname was supplied" for a URL without one, though this transport has no use for it)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded demo's message folders; the test suite points BROKER_DIR at a folder of its own, so the
    # tasks it sends never wait in var/broker for `make demo`'s worker.
    _broker_dir = Path(env.str("BROKER_DIR", default=str(VAR_DIR / "broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control in the working directory
        "store_processed": False,
    }

# --- Celery (worker/celery.py reads every CELERY_* name; structural options live there) ---
# No result backend by default: task state, stage and percent are TaskRun rows that the shop reads. The
# fanned-out batch score (RECS_SCORE_FANOUT) is a Celery chord and needs one, e.g. redis://redis:6379/2.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=65 * 60)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=4_000_000)  # KiB
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged task (its worker was killed) is handed out again after this many seconds;
    # it must outlast the hard time limit or a long task would run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 300),
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": 1,
    }
RECS_CHECK_EVERY_S = env.float("RECS_CHECK_EVERY_S", default=60.0)
CELERY_BEAT_SCHEDULE = {
    # Cheap check; retrains only when RECS_RETRAIN_EVERY_MINUTES passed or RECS_RETRAIN_AFTER_EVENTS arrived.
    # A check not picked up within one period expires: checks queued behind a long training run
    # are dropped instead of piling up and firing back to back when it ends.
    "recs-retrain-if-due": {
        "task": "worker.tasks.retrain_if_due",
        "schedule": RECS_CHECK_EVERY_S,
        "options": {"expires": RECS_CHECK_EVERY_S},
    },
    # Decayed product popularity (the "popular" sort and rails): reads only the events since the last run.
    "catalog-popularity-refresh": {
        "task": "worker.popularity.refresh",
        "schedule": env.float("POPULARITY_REFRESH_EVERY_S", default=300.0),
    },
}

# --- Experiments ---
# Seconds a process keeps its copy of the running experiment (no query per request; edits show up this late).
EXPERIMENTS_CACHE_TTL_S = env.float("EXPERIMENTS_CACHE_TTL_S", default=10.0)
# Visitors (both arms together) near which the always-valid interval is tightest (GrowthBook's default N).
EXPERIMENTS_SEQUENTIAL_TUNING = env.int("EXPERIMENTS_SEQUENTIAL_TUNING", default=5000)
# Revenue per visitor counts each visitor's revenue up to this percentile of the buyers' revenue, all arms together
# (winsorizing: one whale order would otherwise decide a revenue lift on its own). 0 or 1: not capped.
EXPERIMENTS_REVENUE_CAP_PERCENTILE = env.float("EXPERIMENTS_REVENUE_CAP_PERCENTILE", default=0.99)
if not 0.0 <= EXPERIMENTS_REVENUE_CAP_PERCENTILE <= 1.0:
    raise ImproperlyConfigured(
        f"EXPERIMENTS_REVENUE_CAP_PERCENTILE must be between 0 and 1 (0.99: the 99th percentile; 0: no cap), "
        f"got {EXPERIMENTS_REVENUE_CAP_PERCENTILE}"
    )

# --- Recommendations: retraining, batch scoring, snapshots ---
MODEL_DIR = env.path("MODEL_DIR", default=str(VAR_DIR / "models"))
SNAPSHOT_DIR = env.path("SNAPSHOT_DIR", default=str(VAR_DIR / "snapshots"))
SNAPSHOTS_KEEP = env.int("SNAPSHOTS_KEEP", default=3)
RECS_RETRAIN_EVERY_MINUTES = env.int("RECS_RETRAIN_EVERY_MINUTES", default=360)
RECS_RETRAIN_AFTER_EVENTS = env.int("RECS_RETRAIN_AFTER_EVENTS", default=50_000)
RECS_GATE_TOLERANCE = env.float("RECS_GATE_TOLERANCE", default=0.005)
RECS_TOP_K = env.int("RECS_TOP_K", default=50)
# Category diversity of each precomputed list: at most this many per category (0: no cap).
RECS_MAX_PER_CATEGORY = env.int("RECS_MAX_PER_CATEGORY", default=0)
RECS_ACTIVE_DAYS = env.int("RECS_ACTIVE_DAYS", default=90)  # visitors with an event this recent get scored
RECS_SCORE_CHUNK = env.int("RECS_SCORE_CHUNK", default=500)  # visitors per committed chunk
# Batch scoring as one chunk task per RECS_SCORE_CHUNK visitors across every worker consuming `gpu` (a chord;
# needs CELERY_RESULT_BACKEND). Off: one task scores every chunk in turn (the embedded demo, one worker).
RECS_SCORE_FANOUT = env.bool("RECS_SCORE_FANOUT", default=False)
RECS_BATCH_THROTTLE_S = env.float("RECS_BATCH_THROTTLE_S", default=0.0)  # pause between chunks (spares the DB)
RECS_EXPORT_ROW_GROUP = env.int("RECS_EXPORT_ROW_GROUP", default=100_000)
RECS_MAX_DELIVERIES = env.int("RECS_MAX_DELIVERIES", default=3)  # a task that killed its worker this often fails
RECS_STALE_RUN_S = env.int("RECS_STALE_RUN_S", default=CELERY_TASK_TIME_LIMIT + 600)
# A run started while the broker is down keeps its task "to send" (shop.recs.runs): the process that started
# it retries every RECS_OUTBOX_RETRY_S (0: off), and beat sends what is left every RECS_OUTBOX_EVERY_S.
RECS_OUTBOX_RETRY_S = env.float("RECS_OUTBOX_RETRY_S", default=3.0)
# The worker and beat leave out the lines of a routine beat run that found nothing to do (the outbox sweep
# every RECS_OUTBOX_EVERY_S); true logs them all.
WORKER_LOG_ROUTINE_TASKS = env.bool("WORKER_LOG_ROUTINE_TASKS", default=False)
CELERY_BEAT_SCHEDULE["recs-send-pending-runs"] = {
    "task": "worker.tasks.task_runs_send_pending",
    "schedule": env.float("RECS_OUTBOX_EVERY_S", default=15.0),
    "options": {"expires": env.float("RECS_OUTBOX_EVERY_S", default=15.0)},
}
# Overrides of recommender.config.Config as JSON, e.g. '{"train": {"epochs": 1}}' (tests train tiny models).
RECS_TRAIN_CONFIG = env.json("RECS_TRAIN_CONFIG", default={})
# Rails the browser fetches after the page has loaded (``/rails/<placement>``), so a page does not wait for
# a live re-rank: the personal rails of the home and product pages. Empty: every rail is rendered in its page.
RAILS_AFTER_LOAD = env.list("RAILS_AFTER_LOAD", default=["home.recommended", "product.recommended"])
# Live serving (shop.recs.live): a request falls back to the batch list, then popularity, past this budget.
RECS_LATENCY_BUDGET_MS = env.float("RECS_LATENCY_BUDGET_MS", default=25.0)
RECS_LIVE_CANDIDATES = env.int("RECS_LIVE_CANDIDATES", default=500)  # stage-1 candidates re-ranked per request
RECS_FRESH_EVENTS = env.int("RECS_FRESH_EVENTS", default=100)  # newest events since the snapshot read per request
RECS_DB_TIMEOUT_MS = env.int("RECS_DB_TIMEOUT_MS", default=50)  # statement timeout of that read (PostgreSQL)
RECS_SERVING_LOAD = env.bool("RECS_SERVING_LOAD", default=True)  # load the model in web processes (a thread)
# ... and build each pipeline in a child process, handed back whole (shop.recs.engine.build_apart): a build
# holds the interpreter lock for up to a second at a time, which would stop the process's requests
RECS_SERVING_BUILD_APART = env.bool("RECS_SERVING_BUILD_APART", default=True)
RECS_SERVING_BUILD_NICE = env.int("RECS_SERVING_BUILD_NICE", default=10)  # that child's niceness (0-19)
if not 0 <= RECS_SERVING_BUILD_NICE <= 19:
    raise ImproperlyConfigured(f"RECS_SERVING_BUILD_NICE must be 0-19, got {RECS_SERVING_BUILD_NICE}")
RECS_SERVING_POLL_S = env.float("RECS_SERVING_POLL_S", default=0.5)  # how often that thread checks the version
# models a web process keeps after serving them (the current one included): a rollback to one of them is a swap
RECS_SERVING_KEEP = env.int("RECS_SERVING_KEEP", default=2)
# while no model serves, web processes fit stage 1 (the heuristic arm) on at most this many newest snapshot events
RECS_STAGE1_MAX_EVENTS = env.int("RECS_STAGE1_MAX_EVENTS", default=5_000_000)
# 0: each request scores on its own thread, its budget checked between the stages (see README, "Live
# recommendations"); N > 0: N scoring threads per web process, a request waiting at most its budget for one
RECS_SERVING_THREADS = env.int("RECS_SERVING_THREADS", default=0)
if RECS_SERVING_THREADS < 0:
    raise ImproperlyConfigured(f"RECS_SERVING_THREADS must be 0 or more, got {RECS_SERVING_THREADS}")
RECS_TORCH_THREADS = env.int("RECS_TORCH_THREADS", default=1)  # torch intra-op threads in a web process
# after each model load, move what is alive (Django, torch, torchrec, the model) out of the cyclic garbage
# collector's sight (gc.freeze): its full collections then scan this process's own garbage, not 470,000 objects
RECS_GC_FREEZE = env.bool("RECS_GC_FREEZE", default=True)
RECS_STATS_FLUSH_S = env.float("RECS_STATS_FLUSH_S", default=10.0)  # serving counters written this often

# The merchant console (Streamlit, dashboard/app.py); the admin links to it.
CONSOLE_URL = env.str("CONSOLE_URL", default="http://localhost:8501/")
# Where `python -m recommender.sweep` writes the candidates sweep the console shows.
BENCH_DIR = env.path("BENCH_DIR", default=str(VAR_DIR / "bench"))

# --- Operations (shop.ops): probes and Prometheus metrics ---
# /metrics is not public: a staff session, "Authorization: Bearer <METRICS_TOKEN>", or a TCP peer in
# METRICS_ALLOWED_IPS (addresses or CIDR networks; X-Forwarded-For is never trusted).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])
# /readyz: seconds to wait for the broker; whether "no model trained yet" counts as not ready
# (by default the shop is ready without one: rails fall back to popular products).
READYZ_TIMEOUT_S = env.float("READYZ_TIMEOUT_S", default=2.0)
READYZ_REQUIRE_MODEL = env.bool("READYZ_REQUIRE_MODEL", default=False)
# Orchestrators probe over plain HTTP inside their network: no HTTPS redirect for these paths.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # fbgemm-gpu logs a line per native library it loads (14 in each web process, when the model loads)
    "filters": {"library_chatter": {"()": "shop.ops.log_filters.LibraryChatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["library_chatter"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}
