# The two entry points of the README: `make demo` and `make test`.
# Both work on a fresh machine: they create .venv and install what is needed.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test setup system lint typecheck unit bench clean

# setup.py compiles collectors/otlp_convert.py with mypyc: a change to it rebuilds.
$(VENV)/.installed: pyproject.toml setup.py collectors/otlp_convert.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v WARNING || true
	$(PY) -m pip install -q -e '.[test]' 2>&1 | grep -vE 'WARNING|^\s*$$' || true
	@$(PY) -c "import agent, grpc, textual, hyperscan" && touch $@

setup: $(VENV)/.installed

# Debian packages for the eBPF collector and the terminal tests (root only; a no-op elsewhere).
system:
	@bash scripts/setup_system.sh $(VENV)

demo: setup
	$(VENV)/bin/apiward demo

lint: setup
	$(VENV)/bin/ruff check agent collectors enrichers tui tests bench examples

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test: setup system lint typecheck unit

bench: setup
	$(PY) bench/ingest.py --duration 20

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	find collectors -name '*.so' -delete
