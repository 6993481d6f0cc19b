# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install demo test ui sql clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (this project's machines and CI),
	# Python never caches .pyc files, and every process (code server, run worker, dbt, each test's
	# subprocess) compiled Dagster, dbt and pandas from source: 6.6 s CPU per code-location load,
	# 3.4 s with the bytecode written once here (scripts/bench_code_location.py).
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/fer-warehouse demo

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/fer-warehouse ui

sql: install
	$(BIN)/fer-warehouse sql

clean:
	rm -rf data dbt/target dbt/logs
