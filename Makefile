# Every target installs what it needs into .venv on first use (and again when pyproject.toml changes).
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit docs clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

## demo: the real controller against a simulated consumer and gateway, with a timeline
demo: $(STAMP)
	$(BIN)/presence-controller demo

## test: lint, type-check and the whole test suite
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check controller tests
	$(BIN)/ruff format --check controller tests

typecheck: $(STAMP)
	$(BIN)/mypy controller

unit: $(STAMP)
	$(BIN)/pytest

## docs: regenerate docs/configuration.md from the settings model
docs: $(STAMP)
	$(BIN)/presence-controller check-config --reference > docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
