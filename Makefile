# The two commands a newcomer needs:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
STAMP := $(VENV)/.installed
PORT ?= 8000
DEMO_PRODUCTS ?= 5000
CONSOLE_PORT ?= 8501
export CONSOLE_PORT
# The settings have no published key and DEBUG off; the demo opts in to DEBUG and uses a key
# generated once for this checkout (var/dev-secret-key). An exported SECRET_KEY or DEBUG wins.
DEV_KEY := var/dev-secret-key
DEMO_ENV = DEBUG="$${DEBUG:-true}" SECRET_KEY="$${SECRET_KEY:-$$(cat $(DEV_KEY))}"

.PHONY: superuser setup demo experiment test test-fast lint system-deps migrate seed serve bench-ingest bench-pages bench-recs clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# torchrec's metadata asks for the CUDA fbgemm-gpu; the CPU build (fbgemm-gpu-cpu) is in requirements.txt
	$(BIN)/pip install -q --no-deps torchrec==1.8.0
	touch $(STAMP)

$(DEV_KEY):
	@mkdir -p var
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

migrate: setup $(DEV_KEY)
	$(DEMO_ENV) $(MANAGE) migrate --noinput

seed: migrate
	$(DEMO_ENV) $(MANAGE) seed_catalog --products $(DEMO_PRODUCTS) --seed 42

demo: seed
	$(DEMO_ENV) $(MANAGE) collectstatic --noinput -v 0
	@echo ""
	@echo "  Storefront:  http://localhost:$(PORT)/     API docs: http://localhost:$(PORT)/api/docs/"
	@echo "  Merchant admin: http://localhost:$(PORT)/admin/  (create a login: make superuser)"
	@echo "  Merchant console: http://localhost:$(CONSOLE_PORT)/  (log in with a staff account of the shop)"
	@echo "  Requests: var/web-access.log (WEB_ACCESS_LOG=- prints them here)"
	@echo ""
	@# honcho gives every process type its own PORT; the closed loop finds the shop through DEMO_URL.
	@# Beat's first retrain check waits RECS_CHECK_EVERY_S (10 min here): the loop trains the first model on
	@# all of round 1, instead of beat training one on its first minute that no holdout could gate.
	$(DEMO_ENV) RECS_CHECK_EVERY_S="$${RECS_CHECK_EVERY_S:-600}" PORT=$(PORT) DEMO_URL=http://127.0.0.1:$(PORT) \
		$(BIN)/honcho start -f Procfile

# The closed loop at a size that can answer: new shoppers keep arriving until EXPERIMENT_VISITORS were
# exposed (4,500: about 1,500 per arm, what a +20% conversion lift at 25% needs for 80% power), or
# EXPERIMENT_MINUTES passed; then the lift table, what each arm served, and the smallest detectable lift.
# gunicorn serves; the loop retrains and batch-scores in its own process (no worker or beat needed).
EXPERIMENT_VISITORS ?= 4500
EXPERIMENT_MINUTES ?= 30
experiment: seed
	$(DEMO_ENV) WEB_ACCESS_LOG="$${WEB_ACCESS_LOG-var/web-access.log}" bash -c '$(BIN)/gunicorn shop.wsgi:application --config python:shop.ops.gunicorn_conf \
		--bind 127.0.0.1:$(PORT) & web=$$!; trap "kill $$web" EXIT; \
		$(MANAGE) closed_loop --url http://127.0.0.1:$(PORT) --inline --shoppers $${EXPERIMENT_SHOPPERS:-300} \
		--warmup-rounds 3 --visitors $(EXPERIMENT_VISITORS) --max-minutes $(EXPERIMENT_MINUTES)'

superuser: migrate
	$(DEMO_ENV) $(MANAGE) createsuperuser

system-deps:
	./scripts/system-deps.sh

lint: setup $(DEV_KEY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DEMO_ENV) $(MANAGE) makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=shop.settings.production SECRET_KEY=check-deploy-$$RANDOM-0123456789abcdefghijklmnopqrstuvwxyz ALLOWED_HOSTS=shop.example.com \
		$(MANAGE) check --deploy --fail-level WARNING

# Everything: lint, then the whole suite (slow and browser tests included) on a throwaway
# PostgreSQL and Redis that pytest starts on loopback.
test: setup system-deps lint
	$(BIN)/pytest

# Quicker loop while developing: no slow tests.
test-fast: setup system-deps
	$(BIN)/pytest -m "not slow" -x -q

bench-ingest: setup system-deps
	$(BIN)/python -m benchmarks.ingest

bench-pages: setup system-deps
	$(BIN)/python -m benchmarks.pages

bench-recs: setup system-deps
	$(BIN)/python -m benchmarks.recs --events 1000000
	$(BIN)/python -m benchmarks.recs --events 10000000

# Faults on real servers (README "Reliability and security", R1-R6): worker kills, replays, a PostgreSQL crash,
# corrupt model publishes, Redis down, a 2-minute soak (the documented 15-minute one: add --soak-minutes 15).
.PHONY: bench-reliability
bench-reliability: setup system-deps
	$(BIN)/python -m benchmarks.reliability r1 r2 r3 r5 r4 r6

clean:
	rm -rf var/shop.sqlite3* var/static var/broker
