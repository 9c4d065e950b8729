# Two commands on a fresh machine: `make chat` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: chat test install lint bench default-model results clean

# Create the virtual environment and install the project with its dev tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Chat with the built-in default model (shipped inside the package: nothing to download
# or train first). Every turn is kept in the transcripts file (`chatbot transcripts path`).
chat: $(STAMP)
	$(BIN)/chatbot chat

test: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts
	$(BIN)/python -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check chatbot tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_ingest.py --opus
	$(BIN)/python scripts/bench_input.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_decode.py
	$(BIN)/python scripts/bench_serve.py

# Train and package the built-in default model (about an hour on a laptop CPU), then
# write docs/results.md from measurements.
default-model: $(STAMP)
	$(BIN)/python scripts/train_default.py
results: $(STAMP)
	$(BIN)/python scripts/results.py --steps 3000 --hidden 128

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
