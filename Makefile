# Two commands on a fresh machine: `make chat` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: chat test install lint bench clean

# Create the virtual environment and install the project with its dev tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The furthest stage that exists so far: corpus and training. Ingest the built-in
# chitchat conversations (once; a no-op afterwards), then train a small starter model
# for a few hundred steps (later runs continue it: --resume says when nothing is left).
STARTER = $(BIN)/python -c "from chatbot.paths import data_dir; print(data_dir() / 'models' / 'starter')"
chat: $(STAMP)
	$(BIN)/chatbot ingest --builtin chitchat
	$(BIN)/chatbot corpus stats
	@dir="$$($(STARTER))"; resume=""; [ -f "$$dir/config.json" ] && resume="--resume"; \
	  $(BIN)/chatbot train --model "$$dir" --max-steps 300 --hidden-dim 128 \
	    --embedding-dim 64 --batch-size 32 $$resume
	@echo "The chat arrives with the decoding and chat stages; the starter model is in"
	@echo "  $$($(STARTER))"

test: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
