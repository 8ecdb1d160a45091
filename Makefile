# Everything a fresh machine needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch and torchvision are pinned here (the CI machines serve these builds from disk); the
# library's own ranges in pyproject.toml stay loose.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
SPECS := $(wildcard specs/*.yaml)

.PHONY: setup demo test lint generate bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[dev,export,geo]" $(TORCH_PINS)
	touch $(STAMP)

# one process for all specs: torch and torchvision are imported once
generate: $(STAMP)
	$(BIN)/nncompile $(SPECS) -o generated/

demo: generate
	$(BIN)/python docs/demo/train_demo.py

# --dist loadgroup: tests marked with one xdist_group share a worker, and so its session fixtures.
# Bytecode is written (PYTHONDONTWRITEBYTECODE set empty, Python's default): where the environment
# turns it off, each worker and each process a test starts compiles the sources and rewrites the
# tests' asserts again, about 5 s a worker.
test: $(STAMP) browser
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 2 --dist loadgroup -q

# Debian's Chromium for the browser tests of `graph --html` (tests/test_graph_html.py, which skip
# without it): installed when missing and apt-get can (as root); never fails `make test`.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] \
		|| (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "could not install chromium: the browser tests will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check compiler tests bench docs
	$(BIN)/ruff format --check compiler tests bench docs

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache lightning_logs
