# lab: one command per experiment (`make help` lists them); each installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB := $(BIN)/lab
PYTEST_ARGS ?=
# `make test`'s pytest-xdist workers: one per core, at most 4 (about 1 GB each); 0: in-process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); \
	if [ $$n -gt 4 ]; then n=4; elif [ $$n -lt 2 ]; then n=0; fi; echo $$n)
# Experiments: every experiments/<id>.yaml (files starting with _ are shared presets).
EXPERIMENTS := $(sort $(basename $(notdir $(wildcard experiments/[!_]*.yaml))))
# Studies: experiments/_studies/<id>.yaml lists its runs and closing steps (lab study);
# sweeps run _sweeps/<id>.yaml grids. Neither is a plain run of its YAML (MULTI_RUN).
STUDIES := $(sort $(wildcard experiments/_studies/*.yaml))
STUDY_IDS := $(basename $(notdir $(STUDIES)))
SWEEPS := $(sort $(basename $(notdir $(wildcard experiments/_sweeps/*.yaml))))
MULTI_RUN := $(STUDY_IDS) $(SWEEPS) stl10-svm fmnist-svm
# fmnist-* read the Debian package's files if installed (else FMNIST_DATA=--data.init_args.download=true).
FMNIST_FOLDER ?= $(wildcard /usr/share/datasets/fashion-mnist)
FMNIST_DATA ?= $(if $(FMNIST_FOLDER),--data.init_args.folder=$(FMNIST_FOLDER))
# Benchmarks: bench-<x> runs `lab bench $(BENCH_<x>)` (`lab bench` lists them all).
BENCH_data := dataloader --images 10000
BENCH_losses := losses --batch 512 --dim 128
BENCH_tsne := tsne --points 10000 --dim 512
BENCH_overhead := overhead --batch 64 --image_size 32 --steps 10 --repeats 5
BENCH_throughput := throughput --sizes 32 64 --steps 10
BENCH_device-data := dataloader --device-path --images 50000 --epochs 3 --workers 2 --batch-size 512
BENCH_startup := startup --record
BENCH_loop := loop --record
BENCHES := bench-data bench-losses bench-tsne bench-overhead bench-throughput bench-device-data \
	bench-startup bench-loop

# $(call run,<yaml id>,<name>,<arguments>): fit, then test its last.ckpt in the same process
# (`lab test --ckpt_path last` without a second start-up; the blank line ends it).
define run
	$(LAB) fit --config experiments/$(1).yaml --experiment $(2) $(3) --then_test last

endef

.DEFAULT_GOAL := help
.PHONY: help install test lint format $(BENCHES) bench-device-pk gpu-check tb clean \
	results-tables $(STUDY_IDS) $(EXPERIMENTS)

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-25s\033[0m %s\n", $$1, $$2}'
	@awk '/^description:/ {sub(/^description: *"?/, ""); sub(/"$$/, ""); n = FILENAME; \
		sub(/.*\//, "", n); sub(/\.yaml$$/, "", n); printf "  \033[36m%-25s\033[0m %s\n", n, $$0}' $(STUDIES)
	@echo "  <id>                      fit then test experiments/<id>.yaml: $(EXPERIMENTS)"
	@echo "  bench-<x>                 lab bench <x> (\`lab bench\` says what each measures): $(BENCHES)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
install: $(STAMP) ## Create .venv and install lab with its dev tools

$(filter-out $(MULTI_RUN),$(EXPERIMENTS)): %: $(STAMP)
	$(call run,$@,$@,$(if $(filter fmnist-%,$@),$(FMNIST_DATA)))
	$(LAB) summary $@
# Studies: the runs, summary, report and compares a study file lists (lab study --dry_run prints them).
$(STUDY_IDS): %: $(STAMP)
	$(LAB) study experiments/_studies/$@.yaml --fashion_mnist="$(FMNIST_DATA)"

# Sweeps that end by training their best setting (by val/acc) once more (lab sweep --final).
SWEEPS_FINAL := cifar-tiny-aug

$(SWEEPS): %: $(STAMP)
	$(LAB) sweep --config experiments/$@.yaml --grid_file experiments/_sweeps/$@.yaml$(if \
		$(filter $@,$(SWEEPS_FINAL)), --final)
stl10-svm: $(STAMP) ## ImageNet ResNet-50 features of STL-10 + SVMs: 3 kernels x 3 scalings, one table
	$(LAB) svm --config experiments/stl10-svm.yaml
fmnist-svm: $(STAMP) ## SVMs on the newest fmnist-ce backbone's features and on raw pixels, one table
	$(LAB) svm --config experiments/fmnist-svm.yaml --backbone.init_args.weights=last:fmnist-ce $(FMNIST_DATA)
test: $(STAMP) lint ## Lint, then run the whole test suite (slow tests included), on up to 4 cores
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check lab tests
	$(BIN)/ruff format --check lab tests
format: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix lab tests
	$(BIN)/ruff format lab tests

$(BENCHES): bench-%: $(STAMP)
	$(LAB) bench $(BENCH_$*)
bench-device-pk: $(STAMP) ## Images/s of P x K (10 x 8) training batches: DataLoader vs images kept on the device
	nice $(LAB) bench dataloader --device-path --images 4000 --epochs 3 --workers 2 --pk 10 8
gpu-check: $(STAMP) ## On one CUDA GPU (<= 8 min): loss numerics, host syncs, overhead, throughput, compile, device data
	$(LAB) bench gpu --out results/gpu-check.txt
results-tables: $(STAMP) ## Rewrite README.md's result tables from results/ (lab record RUN adds a run's row)
	$(LAB) record --tables
tb: $(STAMP) ## Open TensorBoard on lightning_logs/
	$(BIN)/tensorboard --logdir lightning_logs
clean: ## Remove .venv, caches and run outputs (keeps lightning_logs/.gitkeep)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find lightning_logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
