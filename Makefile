# Quick start: `make serve` (set up and serve) and `make test` (set up and test).

# The first interpreter that is Python 3.12 or newer; .python-version selects
# one through pyenv where pyenv is installed.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null); do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test check audit constraints bench bench-replication bench-faults setup check-python

check-python:
	@test -n "$(PYTHON)" || { echo "Error: counterproject needs Python 3.12 or newer (Django 6.1); install one, or name it with 'make PYTHON=/path/to/python3.12 ...'." >&2; exit 1; }

$(BIN)/python: | check-python
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable .
	touch $@

# The test extra: pytest, the server fixtures, selenium, django-sequences.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

setup: $(VENV)/.installed

# Serve the embedded default (SQLite beside manage.py) at http://127.0.0.1:8000/.
serve: setup
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --no-input
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py collectstatic --no-input --verbosity 0
	DEBUG=$${DEBUG:-1} $(BIN)/gunicorn -c gunicorn.conf.py

# The whole suite on PostgreSQL (it starts its own PostgreSQL, Redis and
# gunicorn servers), then the in-process database tests again on a
# file-backed SQLite, the embedded default (tests/conftest.py). The second
# runs even when the first fails, so that one run reports on both.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS); postgresql=$$?; \
	$(BIN)/python -m pytest --database=sqlite $(PYTEST_ARGS) && exit $$postgresql

# Style and types: ruff (lint and format) and mypy with django-stubs, as CI
# runs them (.ci/run). The settings need a secret to load for the stubs.
$(VENV)/.installed-check: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[check]'
	touch $@

check: $(VENV)/.installed-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=mypy-only $(BIN)/mypy

# Known vulnerabilities in the pinned packages (constraints.txt), from PyPI's
# advisory data. It needs PyPI itself: where only a mirror answers (as on
# this project's CI machines), every package is "not found" and --strict
# makes that a failure rather than a pass; so CI does not run it.
audit: $(VENV)/.installed-check
	$(BIN)/pip-audit --strict --no-deps --disable-pip -r constraints.txt

# Measure the take against the database's limit (docs/data/benchmarks.json)
# and the naive alternatives (docs/data/alternatives.json), each run keeping
# the previous ones as *-2.json and *-3.json; bench/render.py then renders
# them into docs/benchmarks.md, its plots, and the alternatives' generated
# blocks in README.md and docs/alternatives.md. Then fairness under a
# keep-alive flood and what the metrics cost, each rendered the same way.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py
	$(BIN)/python bench/naive.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/fairness.py
	$(BIN)/python bench/render_fairness.py
	$(BIN)/python bench/metrics_cost.py
	$(BIN)/python bench/render_metrics_cost.py

# Measure what a synchronous standby costs the take
# (docs/data/replication.json, the previous run kept as replication-2.json);
# bench/render_replication.py renders the runs into
# docs/benchmarks-replication.md and its plot.
bench-replication: $(VENV)/.installed-test
	$(BIN)/python bench/replication.py
	$(BIN)/python bench/render_replication.py

# Run the network fault tests (root: network namespaces) and keep the figures
# they report (docs/data/faults.json, the previous runs as faults-2.json and
# faults-3.json); bench/render_faults.py renders them into the table of
# docs/deployment.md, "What the app does in each fault".
bench-faults: $(VENV)/.installed-test
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/render_faults.py

# Write constraints.txt anew: the newest versions pyproject.toml allows, in a
# fresh virtualenv; run the suite before committing it.
constraints: | check-python
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install --quiet --editable '.[test,check]'
	{ sed -n '1,4p' constraints.txt; .constraints-venv/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .constraints-venv
