# One task runner. `make run` serves; `make check` lints and type-checks; `make test` runs every test ring
# with branch coverage and fails under the floor in pyproject.toml. Each sets itself up. `.ci/run` runs both.
# VENV=/path/to/venv runs on an existing environment (add -o /path/to/venv/.installed to skip the install).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1

## readme: regenerate the README's settings table from chatbot/settings.py
readme: $(STAMP)
	$(BIN)/python -m chatbot.settings_doc

.PHONY: readme run serve test test-unit test-service test-loopback test-transport test-browser test-reliability chaos soak crash-ingest lint typecheck check bench bench-quick bench-offline bench-readme eval provision clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

## run: set up, ingest the bundled guide if the collection is empty, serve on 127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python -m chatbot serve

serve: run

## provision: system packages some test rings need (chromium, redis-server); idempotent
provision:
	bash scripts/provision.sh

## test: every ring (unit, service, loopback, transport, browser, reliability) with branch coverage;
## prints the uncovered lines and fails under [tool.coverage.report] fail_under
test: $(STAMP) provision
	$(BIN)/python -m pytest -q --cov=chatbot

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit
test-service: $(STAMP)
	$(BIN)/python -m pytest -q tests/service
test-loopback: $(STAMP)
	$(BIN)/python -m pytest -q tests/loopback
test-transport: $(STAMP)
	$(BIN)/python -m pytest -q tests/transport
test-browser: $(STAMP) provision
	$(BIN)/python -m pytest -q tests/browser
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -q tests/reliability

## chaos / soak / crash-ingest: the reliability suites at full size (CI runs them smaller in `make test`)
chaos: $(STAMP)
	CHAOS_TURNS=$${CHAOS_TURNS:-1000} $(BIN)/python -m pytest -q -s tests/reliability/test_chaos.py
soak: $(STAMP)
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BIN)/python -m pytest -q -s tests/reliability/test_soak.py
crash-ingest: $(STAMP)
	$(BIN)/python scripts/crash_ingest.py --runs $${CRASH_RUNS:-200}

## check: lint (ruff check, ruff format --check) and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check chatbot tests bench
	$(BIN)/ruff format --check chatbot tests bench
typecheck: $(STAMP)
	$(BIN)/mypy chatbot
check: lint typecheck

## bench: the performance suite (prints a table, writes bench/results/*.json)
bench: $(STAMP)
	$(BIN)/python -m bench.run

## bench-quick: the same suite in ~3 minutes (short windows, small micro-benchmarks)
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

## bench-offline: the offline default (local embedder, extractive answer) under websocket load, alone
bench-offline: $(STAMP)
	$(BIN)/python -m bench.offline

## bench-readme: the README performance tables from the newest bench/results/*.json (RESULTS=file to pick one)
bench-readme: $(STAMP)
	$(BIN)/python -m bench.readme_table $${RESULTS:-$$(ls -t bench/results/*.json | head -1)}

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
