# Payt debtor management. The first two targets are all a newcomer needs:
#   make demo   - the ERP with the module, demo data and the web client
#   make test   - every test, on SQLite and on PostgreSQL
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_URI ?= postgresql://postgres@127.0.0.1:5432/
# The tests' sessions do not wait for the disk at each commit (the server
# still applies every commit in order; only a crash of PostgreSQL itself
# could lose the last ones): about 4 ms less per commit.
PG_TEST_URI ?= $(PG_URI)?options=-c%20synchronous_commit%3Doff
DB_CACHE_DIR := $(CURDIR)/var/db-cache
TESTS := addons/payt_dunning/tests
# Test processes side by side (pytest-xdist), a test file each at a time:
# the tests mostly wait (servers, killed senders, the browser), so three
# workers on two cores take about half the time. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: demo test venv sao chromium test-sqlite test-postgresql test-hub bench demo-reset clean screenshots

demo: venv sao
	scripts/demo.sh

# The hub's suite runs beside SQLite's (each mostly waits), then PostgreSQL's.
test: venv sao chromium
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-hub
	$(MAKE) --no-print-directory test-postgresql

# The browser tests drive Debian's Chromium (headless), not a downloaded one:
# installed when missing and we may, else the one command that does it.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's Chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "The browser tests need Debian's Chromium:" \
				"sudo apt-get install chromium chromium-driver" >&2; \
			exit 1; \
		fi; }

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml connectors/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e . -e connectors
	touch $@

sao:
	scripts/fetch-sao.sh

# Trytond names its cached test databases after the modules only: a cache
# from before a change of the module would be restored as it was. Each run
# starts with none (one folder per backend; conftest.py gives each worker
# its own database and cache within it).
test-sqlite: venv
	rm -rf $(DB_CACHE_DIR)/sqlite
	mkdir -p $(DB_CACHE_DIR)/sqlite
	DB_NAME=:memory: DB_CACHE=$(DB_CACHE_DIR)/sqlite $(BIN)/python -m pytest \
		-q $(XDIST) --doctest-glob='scenario_*.rst' $(TESTS)

test-postgresql: venv
	rm -rf $(DB_CACHE_DIR)/postgresql
	mkdir -p $(DB_CACHE_DIR)/postgresql
	TRYTOND_DATABASE__URI='$(PG_TEST_URI)' \
		DB_CACHE=$(DB_CACHE_DIR)/postgresql $(BIN)/python -m pytest -q \
		$(XDIST) --doctest-glob='scenario_*.rst' $(TESTS)

test-hub: venv
	$(BIN)/python -m pytest -q connectors/tests

# Retake the README's screenshots (the browser tests, writing into docs/).
screenshots: venv sao
	mkdir -p $(DB_CACHE_DIR)
	PAYT_SCREENSHOTS=$(CURDIR)/docs/screenshots DB_NAME=:memory: \
		DB_CACHE=$(DB_CACHE_DIR) $(BIN)/python -m pytest -q \
		$(TESTS)/test_journeys_browser.py $(TESTS)/test_browser.py \
		$(TESTS)/test_portal_browser.py

bench: venv
	$(BIN)/python bench/bench_run.py --backend both

demo-reset:
	rm -rf var/demo var/mail

clean:
	rm -rf $(VENV) var
