# qsilicon: three commands on a fresh Debian machine (root, Python 3.11)
#   make demo   set up what is missing, then run the main job
#   make test   set up what is missing, then lint, build the documentation (warnings are errors) and run the tests
#   make docs   set up what is missing, then build the documentation into build/docs
# Set-up is idempotent: a second run only checks a stamp.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qsilicon-setup
TECH   := $(VENV)/share/qsilicon/tech
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if ! command -v iverilog >/dev/null 2>&1 || [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -f /usr/share/doc/opencv-doc/examples/data/aloeGT.png ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ ! -f /usr/include/zlib.h ] || [ ! -f /usr/include/lz4.h ]; then \
		echo "[setup] installing Icarus Verilog, Fashion-MNIST, opencv-doc, PostgreSQL, zlib and lz4 (Verilator FST waveforms) (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog dataset-fashion-mnist opencv-doc postgresql zlib1g-dev liblz4-dev >/dev/null; \
	fi
	@if ! command -v sta >/dev/null 2>&1; then \
		echo "[setup] installing OpenSTA (apt: opensta)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opensta >/dev/null; \
	fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ ! -f $(TECH)/osu018/osu018_stdcells.lib ]; then \
		echo "[setup] extracting the OSU 0.18 um cell library from Debian's qflow-tech-osu018 (without the rest of qflow)"; \
		rm -rf $(VENV)/.tech-tmp && mkdir -p $(VENV)/.tech-tmp $(TECH) && \
		(cd $(VENV)/.tech-tmp && apt-get download -qq qflow-tech-osu018 >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get download -qq qflow-tech-osu018; }) && \
		dpkg-deb -x $(VENV)/.tech-tmp/qflow-tech-osu018_*.deb $(VENV)/.tech-tmp/x && \
		rm -rf $(TECH)/osu018 && cp -r $(VENV)/.tech-tmp/x/usr/share/qflow/tech/osu018 $(TECH)/osu018 && \
		rm -rf $(VENV)/.tech-tmp; \
	fi
	@echo "[setup] torch==2.13.0 (CPU wheel) first, so that nothing pulls a CUDA build"
	@$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	@echo "[setup] qsilicon with its pinned simulator and synthesis wheels"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test,depth,docs]'
	@touch $(STAMP)

demo: setup
	$(BIN)/qsilicon flow

test: setup
	$(BIN)/ruff check .
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -q --runslow $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

docs: setup
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs

clean:
	rm -rf out build .pytest_cache .hypothesis
