# Set-up and entry points. `make demo` and `make test` each create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of this pin lies on the project's build machines; on a GPU machine run
# `make install TORCH_SPEC=torch` (or any CUDA build you already have) instead.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test clean bench

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,apps]"
	$(PY) -m pip install -q --no-deps "fastembed>=0.9,<0.10"
	touch $@

install: $(VENV)/.installed

# ARGS: flags for the job, e.g. `make demo ARGS="--max_steps 200"` (a quick look: see README, "The offline main job")
ARGS ?=
demo: install
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no examples/distill.py $(ARGS)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_training.py

clean:
	rm -rf $(VENV) build *.egg-info
