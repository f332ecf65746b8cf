# lmhtc — set-up and the two commands of the README.
#   make demo   train the default LM-HT net on the digits data, then report (the main job)
#   make test   run the test suite
# Both create the Python 3.10 virtual environment in .venv/ on first use.

PYTHON310 ?= $(shell PYENV_VERSION=3.10.13 pyenv which python3.10 2>/dev/null || command -v python3.10)
VENV := .venv
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON310)" || { echo "error: Python 3.10 not found (lava-nc 0.10.0 needs 3.10); set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON310) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash examples/main_job.sh $(OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(OUT) .pytest_cache
