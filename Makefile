# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

# A CPU machine takes the torch wheel the machine ships (torch==2.13.0, CPU build) and is
# constrained to it, so nothing can pull a CUDA torch or unsloth. A machine with an NVIDIA
# GPU gets the registry's torch and the `gpu` extra (unsloth).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH := torch
CONSTRAINTS :=
EXTRAS := dev,train,gpu
else
TORCH := torch==2.13.0
CONSTRAINTS := -c constraints/cpu.txt
EXTRAS := dev,train
endif

STAMP := $(VENV)/.installed

.PHONY: install demo test lint format schema clean

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(CONSTRAINTS) "$(TORCH)"
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cra demo cra-demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m cra.db.schema_doc --check

test: lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(STAMP)
	$(BIN)/python -m cra.db.schema_doc

clean:
	rm -rf $(VENV) cra-demo .pytest_cache .ruff_cache
