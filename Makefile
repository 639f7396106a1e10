# Two commands (see README):  make reproduce   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?=
OUT    ?= data
ARGS   ?=

.PHONY: test lint reproduce notebooks bench venv clean

$(BIN)/dnn-tf-train: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/dnn-tf-train

lint: venv
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

# Without DATA: downloads notMNIST_large + notMNIST_small into $(OUT) (the course's data).
# DATA=path/to/archive.tar.gz runs offline on that one archive (train/valid/test split from it).
reproduce: venv
	$(BIN)/dnn-tf-reproduce $(if $(DATA),--train-archive $(DATA)) --data-dir $(OUT) $(ARGS)

# Re-executes the three notebooks top to bottom and saves them with their outputs (same DATA as above).
notebooks: venv
	$(BIN)/python scripts/run_notebooks.py $(if $(DATA),--archive $(DATA)) $(ARGS)

bench: venv
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
