# posrig: two commands on a fresh machine -- `make demo` and `make test`.
# `make setup` is idempotent: Debian packages (when root), then .venv with the project and dev extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEBS   := pcscd vsmartcard-vpcd swig libpcsclite-dev pcsc-tools
STAMP  := $(VENV)/.installed

.PHONY: setup debs demo test lint format bench clean

setup: debs $(STAMP)

debs:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "setup: installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	      || { echo "setup: apt-get install failed for:$$missing"; exit 1; }; \
	  else \
	    echo "setup: missing Debian packages:$$missing"; \
	    echo "setup: run: sudo apt-get install -y$$missing   (then make setup again)"; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml | debs
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/rig demo benches/sim.yaml

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if ls testsuites/*.robot >/dev/null 2>&1; then $(BIN)/robocop check testsuites; fi

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
