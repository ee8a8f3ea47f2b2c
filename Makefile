# The two commands of the README. Both set up .venv first: requirements-dev.txt (which
# includes requirements.txt), every version held by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench constraints clean

run: $(VENV)/.installed
	$(PY) -m streamsite.stack

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(VENV)/.installed
	$(PY) bench/run.py $(BENCH_ARGS)

PIP_INSTALL = -m pip install --quiet --disable-pip-version-check

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r requirements-dev.txt -c constraints.txt
	touch $@

# Re-resolve requirements-dev.txt in a fresh venv and lock what it installed
# (docs/OPERATIONS.md, "Dependencies"). Then `make test`, and commit constraints.txt.
LOCK_VENV := var/lock-venv
constraints:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python $(PIP_INSTALL) -r requirements-dev.txt
	{ sed -n '1,/^# Generated/p' constraints.txt; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable --disable-pip-version-check; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) var staticfiles
