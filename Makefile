# `make demo` and `make test` each create .venv if absent and install into it.
# torch 2.13.0 goes in first so pip takes the machine's CPU wheel instead of a CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vandal demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_speed.py
	$(BIN)/python benchmarks/bench_bottle.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
