# Two commands for a fresh machine (see README):
#   make demo   -> set up and run the demo block into a local DuckDB file (no credentials)
#   make test   -> set up and run the test suite (two workers)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export METAFLOW_USER ?= $(shell id -un | sed 's/^root$$/ingest-dev/')

.PHONY: setup demo test bench clean

$(BIN)/ingest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# uv (a runtime dependency anyway: it builds connector environments) installs in seconds what pip takes ~30 s for.
	@# Bytecode is compiled here, once: where PYTHONDONTWRITEBYTECODE is set (this CI image), every `ingest` process
	@# would otherwise compile the CDK, pydantic, duckdb's and our own modules from source again.
	$(BIN)/pip install --quiet 'uv>=0.13,<0.14'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test,snowflake,flows]'
	$(BIN)/python -m compileall -q ingest
	touch $(BIN)/ingest

setup: $(BIN)/ingest

demo: setup
	$(BIN)/ingest run demo
	@echo
	@echo "Data landed in warehouse.duckdb. Look at it:"
	@echo "  $(BIN)/ingest status --team platform"
	@echo "  $(BIN)/ingest describe demo_users"
	@echo "  $(BIN)/python -c \"import duckdb; print(duckdb.connect('warehouse.duckdb').sql('select id, name, email, updated_at from demo_users limit 5'))\""

# Two workers (pytest-xdist): most tests wait on subprocesses and loopback servers, so two keep both cores busy.
# TEST_ARGS to narrow it, e.g. `make test TEST_ARGS='-m "not e2e"'` (the fast in-process part).
test: setup
	$(BIN)/python -m pytest -q -n 2 $(TEST_ARGS)

bench: setup
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/pullers.py --baseline-lanes 1000

clean:
	rm -rf $(VENV) warehouse.duckdb .pytest_cache
