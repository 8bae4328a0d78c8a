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

DEMO_SWEEP := sweeps/demo

# The main job on the bundled default: generate and check the demo data, sweep (Optuna TPE,
# ASHA, a wandb run per trial, the best checkpoint registered as demo-best), evaluate that
# checkpoint on the held-out real-domain images (metrics, and a picture of its predictions:
# best/predictions.png), then the report and where everything is.
demo: install
	$(BIN)/kp data synth $(DEMO_DIR)/synthetic --domain synthetic --num-images 500 --image-size 128 --seed 0
	$(BIN)/kp data synth $(DEMO_DIR)/real --domain real --num-images 100 --image-size 128 --seed 1
	$(BIN)/kp data check $(DEMO_DIR)/synthetic/annotations.json --channels configs/channels/demo.yaml
	$(BIN)/kp data check $(DEMO_DIR)/real/annotations.json --channels configs/channels/demo.yaml
	rm -rf $(DEMO_SWEEP)
	$(BIN)/kp sweep run search_spaces/demo.yaml
	$(BIN)/kp eval --checkpoint $(DEMO_SWEEP)/best/best.ckpt --data $(DEMO_DIR)/real/annotations.json --out $(DEMO_SWEEP)/best/real_metrics.json --render $(DEMO_SWEEP)/best/predictions.png
	$(BIN)/kp sweep report $(DEMO_SWEEP)

test: install-test
	$(BIN)/python -m pytest -q

# The wheels benchmarks/gpu_check.py installs on a GPU machine without a package index (Python
# 3.12, manylinux x86-64; what that machine's image lacks), into .gpu/wheels: carry that folder.
gpu-wheels:
	$(PYTHON) benchmarks/gpu_bundle.py --out .gpu/wheels

lint: install-test
	$(BIN)/ruff check kp_platform tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) demo_runs sweeps .pytest_cache
