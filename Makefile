# One-command set-up: every target creates the virtual environment and installs fathom into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench validate clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0  # the CPU build on this machine's disk satisfies [profile]
	$(BIN)/python -m pip install --quiet -e '.[dev,profile,web,engines,ray]'
	bash scripts/install_browser.sh  # Debian's Chromium for tests/test_web_browser.py; never fails the install
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/fathom train --model llama-3.1-70b --gpu h100-sxm --num-gpus 1024 --tp 8 --pp 4 \
		--seq-len 8192 --global-batch 1024 --micro-batch 1 --recompute selective --tokens 15e12

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

validate: install
	$(BIN)/fathom validate training

bench: install
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
