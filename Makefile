# Chordflow: `make run` starts the whole stack, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install lint bench clean manage shell

run: $(STAMP)
	$(PY) -m config.devstack run

# Django commands, beside a running `make run` (they use its Redis): `make manage ARGS="load_workflows f.yaml"`.
manage: $(STAMP)
	$(PY) manage.py $(ARGS)

shell: $(STAMP)
	$(PY) manage.py shell

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Chordflow against raw Celery on the same stack: `make bench` (a few minutes), `make bench ARGS=--quick`.
bench: $(STAMP)
	$(PY) -m executions.benchmark $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(STAMP)

# Reinstall only when a requirements file changes.
$(STAMP): requirements/base.txt requirements/local.txt requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Chordflow needs Python 3.11 or newer (PYTHON=$(PYTHON) is %d.%d)" % sys.version_info[:2])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/local.txt
	touch $(STAMP)

clean:
	rm -rf var .pytest_cache .ruff_cache
