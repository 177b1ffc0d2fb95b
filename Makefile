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
EXTRAS := dev,train,ranker,gpu
else
TORCH := torch==2.13.0
CONSTRAINTS := -c constraints/cpu.txt
EXTRAS := dev,train,ranker
endif

STAMP := $(VENV)/.installed
# vLLM lives in its own virtualenv (it pins torch and transformers builds of its own).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: install vllm chromium demo test lint format schema clean

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(CONSTRAINTS) "$(TORCH)"
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# The tests that need a real vLLM server skip, saying why, only where it cannot be installed.
$(VLLM_STAMP): scripts/install-vllm.sh
	bash scripts/install-vllm.sh $(VLLM_VENV) && touch $@ || { rm -rf $(VLLM_VENV); \
	  echo "vLLM could not be installed: the tests that need a vLLM server will be skipped"; }

vllm: $(VLLM_STAMP)

# The browser tests of `cra report` need chromium: installed with apt-get where we are root
# on Debian, else they skip, saying why.
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP): $(STAMP)
	{ command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; } \
	  && touch $@ || echo "chromium could not be installed: the browser tests of cra report will be skipped"

chromium: $(CHROMIUM_STAMP)

# The demo's last step serves the tiny model with vLLM (it says so and skips it without).
demo: $(STAMP) $(VLLM_STAMP)
	$(BIN)/cra demo cra-demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m cra.db.schema_doc --check

test: lint $(VLLM_STAMP) $(CHROMIUM_STAMP)
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(STAMP)
	$(BIN)/python -m cra.db.schema_doc

clean:
	rm -rf $(VENV) $(VLLM_VENV) cra-demo .pytest_cache .ruff_cache
