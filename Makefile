# Set-up is part of every target: each installs what it needs, once (stamp files in .make/).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make

.PHONY: demo test test-ts test-py build setup clean bench

demo: build $(STAMPS)/venv
	node bin/loom.js demo --out runs/demo

test: build $(STAMPS)/venv
	node scripts/run-ts-tests.mjs
	$(PY) -m pytest -q python/tests

test-ts: build
	node scripts/run-ts-tests.mjs

# The interop suites run the compiled TypeScript (dist/): they fail, never skip, without it.
test-py: build $(STAMPS)/venv
	$(PY) -m pytest -q python/tests

setup: $(STAMPS)/node $(STAMPS)/venv

# dist/ is rebuilt from scratch so no compiled file of a deleted source (a stale test) survives.
build: $(STAMPS)/node
	rm -rf dist
	npx tsc -p tsconfig.json

$(STAMPS)/node: package.json package-lock.json
	npm ci --no-audit --no-fund
	@mkdir -p $(STAMPS) && touch $@

# torch 2.13.0 CPU is taken from the machine's local wheel directory (pip's find-links).
$(STAMPS)/venv: python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e 'python[test]'
	@mkdir -p $(STAMPS) && touch $@

clean:
	rm -rf dist $(STAMPS) runs/demo
