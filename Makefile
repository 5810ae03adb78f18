# Payt debtor management. The first two targets are all a newcomer needs:
#   make demo   - the ERP with the module, demo data and the web client
#   make test   - every test, on SQLite and on PostgreSQL
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_URI ?= postgresql://postgres@127.0.0.1:5432/
DB_CACHE_DIR := $(CURDIR)/var/db-cache
TESTS := addons/payt_dunning/tests
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: demo test venv sao test-sqlite test-postgresql test-hub bench demo-reset clean

demo: venv sao
	scripts/demo.sh

test: venv sao test-sqlite test-postgresql test-hub

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml connectors/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e . -e connectors
	touch $@

sao:
	scripts/fetch-sao.sh

test-sqlite: venv
	mkdir -p $(DB_CACHE_DIR)
	DB_NAME=:memory: DB_CACHE=$(DB_CACHE_DIR) $(BIN)/python -m pytest -q \
		--doctest-glob='scenario_*.rst' $(TESTS)

test-postgresql: venv
	mkdir -p $(DB_CACHE_DIR)
	TRYTOND_DATABASE__URI=$(PG_URI) DB_CACHE=$(DB_CACHE_DIR) \
		$(BIN)/python -m pytest -q --doctest-glob='scenario_*.rst' $(TESTS)

test-hub: venv
	$(BIN)/python -m pytest -q connectors/tests

bench: venv
	$(BIN)/python bench/bench_run.py --backend both

demo-reset:
	rm -rf var/demo var/mail

clean:
	rm -rf $(VENV) var
