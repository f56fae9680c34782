# lab: one command per experiment. `make help` lists the targets.
# Every target installs what it needs first (a .venv with the package and its tools).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB := $(BIN)/lab
PYTEST_ARGS ?=
# Experiments: every experiments/<id>.yaml (files starting with _ are shared presets).
EXPERIMENTS := $(sort $(basename $(notdir $(wildcard experiments/[!_]*.yaml))))

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format bench-data tb clean $(EXPERIMENTS)

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo "  <id>         fit then test experiments/<id>.yaml: $(EXPERIMENTS)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install lab with its dev tools

demo: $(STAMP) ## Train and test the digits demo on the CPU, then print its results
	$(LAB) fit --config experiments/demo.yaml
	$(LAB) test --config experiments/demo.yaml --ckpt_path last
	$(LAB) summary demo

$(filter-out demo,$(EXPERIMENTS)): %: $(STAMP)
	$(LAB) fit --config experiments/$@.yaml
	$(LAB) test --config experiments/$@.yaml --ckpt_path last
	$(LAB) summary $@

test: $(STAMP) lint ## Lint, then run the whole test suite (slow tests included)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check lab tests
	$(BIN)/ruff format --check lab tests

format: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix lab tests
	$(BIN)/ruff format lab tests

bench-data: $(STAMP) ## Images/s through the train loader: decoded cache vs JPEG decoding
	$(BIN)/python -m lab.bench.dataloader --images 10000

tb: $(STAMP) ## Open TensorBoard on lightning_logs/
	$(BIN)/tensorboard --logdir lightning_logs

clean: ## Remove .venv, caches and run outputs (keeps lightning_logs/.gitkeep)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find lightning_logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
