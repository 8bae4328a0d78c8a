# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A matching torch / torchvision pair (timm needs torchvision; PyPI's torchvision does not import
# beside the CPU-only torch wheel). A machine with its own CUDA build can pass another pair, e.g.
# `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= demo_data

.PHONY: install install-test demo test lint clean gpu-wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	# imgaug ships the quokka photo and its keypoints; its code is never imported.
	$(BIN)/pip install --quiet --no-deps "imgaug==0.4.0"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

DEMO_PIPELINE := pipelines/demo

# The main job on the bundled default: generate the demo data, then the demo pipeline (it checks
# every data file first): the sweep (Optuna TPE, ASHA, a wandb run per trial, the best
# checkpoint registered as demo-sweep-best), a fine-tune of its best on 40 real-domain images,
# both scored side by side on 100 held-out real-domain images and the fine-tuned detector's
# predictions drawn on them (predictions.png); then the sweep's report (--brief: without its own
# trial table, which would repeat the one Tune printed as the sweep ended).
demo: install
	$(BIN)/kp data synth $(DEMO_DIR)/synthetic --domain synthetic --num-images 500 --image-size 128 --seed 0
	$(BIN)/kp data synth $(DEMO_DIR)/real --domain real --num-images 100 --image-size 128 --seed 1
	$(BIN)/kp data synth $(DEMO_DIR)/real_train --domain real --num-images 40 --image-size 128 --seed 2
	rm -rf $(DEMO_PIPELINE)
	$(BIN)/kp pipeline search_spaces/pipelines/demo.yaml
	$(BIN)/kp sweep report --brief $(DEMO_PIPELINE)/sweep/demo-sweep

test: install-test
	$(BIN)/python -m pytest -q

# The wheels benchmarks/gpu_check.py installs on a GPU machine without a package index (Python
# 3.12, manylinux x86-64; what that machine's image lacks), into .gpu/wheels: carry that folder.
gpu-wheels:
	$(PYTHON) benchmarks/gpu_bundle.py --out .gpu/wheels

lint: install-test
	$(BIN)/ruff check kp_platform tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) demo_runs sweeps pipelines .pytest_cache
