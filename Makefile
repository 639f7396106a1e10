# Two commands (see README):  make reproduce   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?=
OUT    ?= data
ARGS   ?=

.PHONY: test reproduce bench venv clean

$(BIN)/dnn-tf-train: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/dnn-tf-train

test: venv
	$(BIN)/python -m pytest -q

# DATA=path/to/archive.tar.gz runs offline on one archive (train/valid/test split from it);
# without DATA it downloads notMNIST_large + notMNIST_small.
reproduce: venv
	$(BIN)/dnn-tf-reproduce $(if $(DATA),--train-archive $(DATA)) --data-dir $(OUT) $(ARGS)

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) *.egg-info
