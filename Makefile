# Two commands for a newcomer:  make run   and   make test
# Both create .venv on first use (Python >= 3.11) and install what they need.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
# torch 2.13.0: the CPU wheel where one is provided locally, the default (CUDA) wheel from
# PyPI on a GPU machine. Override e.g. TORCH_SPEC="torch==2.13.0 --index-url <your index>".
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test test-fast lint report clean venv rulegraph

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $@

venv: $(BIN)/.installed

run: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --rerun-incomplete
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --report results/report.html

# The rule graph: the report draws each run's own (no graphviz needed). `make rulegraph` refreshes
# the committed docs/rulegraph.svg shown in docs/cluster.md (tests/project/test_hygiene.py); it needs graphviz's dot.
rulegraph: $(BIN)/.installed
	@command -v dot >/dev/null 2>&1 || { echo "make rulegraph needs graphviz's 'dot' (apt-get install graphviz)"; exit 1; }
	mkdir -p results docs
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --rulegraph > results/rulegraph.dot
	dot -Tsvg results/rulegraph.dot -o docs/rulegraph.svg

# test: everything, the workflow tests included (they share one smoke run of the whole workflow);
# test-fast: the unit tests only (no Snakemake run), for the edit-test loop
test: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests

test-fast: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not workflow" tests

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile rules
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
