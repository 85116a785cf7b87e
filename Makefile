# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench install clean

$(STAMP): requirements.txt requirements-sandbox.txt requirements-dev.txt pyproject.toml telepay_sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . -e telepay_sandbox
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/telepay demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy over telepay/ and ruff over everything (settings in pyproject.toml; why in docs/decisions.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The inner loop: everything but the slow tests and the end-to-end ones (which run `telepay run`),
# with the `dev` hypothesis profile (few examples). `make test` and CI still run everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache .ruff_cache
