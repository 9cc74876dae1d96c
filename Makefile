# ironmap developer commands. Every target uses the project-local virtual environment .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The official BIDS validator (Deno, from PyPI) in a side environment, not a project dependency.
VALIDATOR_VENV := bench_out/validator-venv
VALIDATOR := $(VALIDATOR_VENV)/bin/bids-validator-deno
VALIDATOR_VERSION ?= 3.0.2
VALIDATE_DIR := validate_out

.PHONY: install demo test test-slow lint bench validate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dask,atlas]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ironmap demo demo_out/

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

$(VALIDATOR):
	$(PYTHON) -m venv $(VALIDATOR_VENV)
	$(VALIDATOR_VENV)/bin/python -m pip install --quiet "bids-validator-deno==$(VALIDATOR_VERSION)"

# The quick demo into validate_out/ (git-ignored), then the validator (offline: the schema is
# bundled) on the simulated raw dataset, its segmentation derivatives and ironmap's derivatives;
# it exits non-zero on any error, so this target fails. Warnings are printed.
validate: $(STAMP) $(VALIDATOR)
	rm -rf $(VALIDATE_DIR)
	$(BIN)/ironmap demo $(VALIDATE_DIR) --quick
	$(VALIDATOR) $(VALIDATE_DIR)/bids --datasetTypes raw
	$(VALIDATOR) $(VALIDATE_DIR)/bids/derivatives/segmentation --datasetTypes derivative
	$(VALIDATOR) $(VALIDATE_DIR)/ironmap --datasetTypes derivative

clean:
	rm -rf $(VENV) demo_out $(VALIDATE_DIR) .pytest_cache .ruff_cache
