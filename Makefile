# Every target works as the first command on a fresh machine: it creates the
# virtualenv and installs what it needs (re-installing when pyproject changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ROOT ?= ./data

.PHONY: serve test bench tools clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.bench: $(VENV)/.base
	$(PY) -m pip install -q -e ".[bench]"
	touch $@

serve: $(VENV)/.base
	$(VENV)/bin/asgi-xfer serve $(ROOT) --host $(HOST) --port $(PORT)

# Command-line tools the end-to-end tests drive (curl, wget, aria2c, ...):
# installed with apt-get when missing and we are root; otherwise those tests
# say which tool is missing.
tools:
	@bash .ci/install-tools.sh

test: $(VENV)/.test tools
	$(PY) -m pytest $(PYTEST_ARGS)

# Each bench runs its peers in the same run, interleaved, and prints ratios;
# results land in bench/results/. About 40 minutes in all on 2 cores.
bench: $(VENV)/.bench $(VENV)/.test tools
	$(PY) bench/run_downloads.py $(BENCH_ARGS)
	$(PY) bench/run_uploads.py
	$(PY) bench/bench_archive.py
	$(PY) bench/bench_multipart_parser.py
	$(PY) bench/bench_cluster.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
