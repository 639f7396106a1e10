# Two commands (see README):  make reproduce   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?=
OUT    ?= data
ARGS   ?=

.PHONY: test lint reproduce notebooks exercises bench venv clean compat demo

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
# The course's presets and ours, seed 0; SEEDS=0,1,2: every preset, the multi-seed ones once per seed
# (the committed results/). ARGS=--quick: a smoke run into runs/quick/.
SEEDS ?=
reproduce: venv
	$(BIN)/dnn-tf-reproduce $(if $(DATA),--train-archive $(DATA)) --data-dir $(OUT) \
		$(if $(SEEDS),--seeds $(SEEDS) --presets all) $(ARGS)

# Re-executes the three notebooks top to bottom and saves them with their outputs (same DATA as above).
notebooks: venv
	$(BIN)/python scripts/run_notebooks.py $(if $(DATA),--archive $(DATA)) $(ARGS)

# Writes exercises/*.ipynb: the notebooks with each problem's solution cells emptied, the checks kept
# (an exercise you have edited is kept; ARGS=--force overwrites it).
exercises: venv
	$(BIN)/python scripts/make_exercises.py $(ARGS)

# The draw-a-letter page (docs/demo.md) of the deep run that make reproduce trains: then open demo/index.html.
# Another run: make demo MODEL=runs/relu1024_seed0; half the download: make demo ARGS=--float16
MODEL ?= runs/deep_seed0
demo: venv
	$(BIN)/dnn-tf-demo --model $(MODEL) --out demo $(ARGS)

bench: venv
	$(BIN)/python benchmarks/run_all.py $(ARGS)

# The suite on Python 3.10 with setup.cfg's lower bounds and on 3.12/3.13 with the newest releases, each in
# .compat/<setup>/; results in docs/compat.md. Not part of CI. A subset: make compat SETUPS=py310-oldest
SETUPS ?=
compat:
	$(PYTHON) scripts/compat.py $(SETUPS) $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
