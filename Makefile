# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: install demo test test-fast artifacts check-artifacts clean

install: $(VENV)/.installed node_modules/.installed

# torch first and exactly pinned: the CPU wheel lies on disk here; a looser pin pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(VENV)/bin/market demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

artifacts: install
	$(PY) -m market.compile

check-artifacts: install
	$(PY) -m market.compile --check

clean:
	rm -rf .market tests/artifacts .pytest_cache
