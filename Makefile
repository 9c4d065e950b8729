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

# The furthest stage that exists so far: the corpus. Ingest the built-in chitchat
# conversations (once; a no-op afterwards) and show what the store holds.
chat: $(STAMP)
	$(BIN)/chatbot ingest --builtin chitchat
	$(BIN)/chatbot corpus stats
	@echo "The chat arrives with the model and decoding stages; until then, explore:"
	@echo "  $(BIN)/chatbot corpus search '\"how are you\"'"

test: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
