# Every target installs what it needs into .venv on first use (and again when pyproject.toml changes).
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit tools alerts docs constraints bench soak clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,plot]' --config-settings editable_mode=compat
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

## unit: the test suite, on two workers (most tests wait on loopback servers, not the CPU)
unit: $(STAMP) tools
	$(BIN)/pytest -n 2

## tools: the real servers and clients the tests run against, from Debian's packages where apt-get
## is usable: promtool and prometheus (package prometheus), Alertmanager (prometheus-alertmanager)
## and, when no kubectl is on PATH, kubectl (kubernetes-client). Elsewhere those tests are
## skipped, and pytest says so.
TOOLS_NEEDED = $(strip $(if $(shell command -v promtool),,prometheus) \
	$(if $(shell command -v prometheus-alertmanager),,prometheus-alertmanager) \
	$(if $(shell command -v kubectl),,kubernetes-client))
tools:
	@if [ -n "$(TOOLS_NEEDED)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(TOOLS_NEEDED) (Debian packages)"; \
	    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(TOOLS_NEEDED) >/dev/null; } \
	      || echo "could not install $(TOOLS_NEEDED): their tests will be skipped"; \
	  else echo "not found: $(TOOLS_NEEDED) (Debian packages): their tests will be skipped"; fi; \
	fi

## alerts: promtool checks the PrometheusRule and runs its unit tests (k8s/monitoring/tests)
alerts: $(STAMP) tools
	$(BIN)/python k8s/monitoring/tests/promtool.py

## docs: regenerate docs/configuration.md from the settings model
docs: $(STAMP)
	$(BIN)/presence-controller check-config --reference > docs/configuration.md

## constraints: re-pin the runtime versions the container image installs (constraints.txt)
constraints:
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 on PATH" >&2; exit 1; }
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet .
	{ echo "# Runtime versions the image installs (pip install -c constraints.txt .). Regenerate: make constraints"; \
	  .venv-lock/bin/python -m pip freeze --exclude presence-controller; } > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## bench: benchmarks side by side with a hand-written baseline, fleet mode -> bench/RESULTS.md (~3 min)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' --config-settings editable_mode=compat
	$(BIN)/python bench/run.py

## soak: 10 minutes of seeded random faults at interval 0.05 s -> bench/RESULTS.md ("6. Soak")
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes 10 --seed 1
