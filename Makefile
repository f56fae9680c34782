# lab: one command per experiment. `make help` lists the targets.
# Every target installs what it needs first (a .venv with the package and its tools).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB := $(BIN)/lab
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: one per usable core, at most 4 (each holds its own
# torch, about 1 GB); 0 runs the tests in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); \
	if [ $$n -gt 4 ]; then n=4; elif [ $$n -lt 2 ]; then n=0; fi; echo $$n)
DEMO_REPORT ?= lightning_logs/reports/demo
# Experiments: every experiments/<id>.yaml (files starting with _ are shared presets).
EXPERIMENTS := $(sort $(basename $(notdir $(wildcard experiments/[!_]*.yaml))))
# Experiments whose target runs more than its YAML once: rules below. A sweep runs its
# experiments/_sweeps/<id>.yaml grid with `lab sweep` (one run per setting, one table).
SWEEPS := $(sort $(basename $(notdir $(wildcard experiments/_sweeps/*.yaml))))
# stl10-svm is not a `lab fit` config: `lab svm` runs it. Fashion-MNIST's three objectives
# read the Debian package's folder (FMNIST_DATA below).
FMNIST := fmnist-ce fmnist-triplet fmnist-center
MULTI_RUN := demo q1-grayscale q1-layerwise stl10-svm contrastive-linear contrastive-nn $(SWEEPS) \
	$(FMNIST) fmnist-long fmnist-long-cpu fmnist-svm fmnist-transfer
CIFAR_REPORT ?= lightning_logs/reports/cifar-transfer
# Fashion-MNIST's IDX files: the Debian package's folder (apt-get install
# dataset-fashion-mnist) when it is there, else torchvision's layout under the data root
# (add --data.init_args.download=true, or FMNIST_DATA=--data.init_args.download=true).
FMNIST_FOLDER ?= $(wildcard /usr/share/datasets/fashion-mnist)
FMNIST_DATA ?= $(if $(FMNIST_FOLDER),--data.init_args.folder=$(FMNIST_FOLDER))
FMNIST_REPORT ?= lightning_logs/reports/fmnist

# $(call run,<yaml id>,<experiment name>,<extra arguments>): fit, then test the last
# checkpoint of that run. The blank line before endef ends the recipe line.
define run
	$(LAB) fit --config experiments/$(1).yaml --experiment $(2) $(3)
	$(LAB) test --config experiments/$(1).yaml --experiment $(2) $(3) --ckpt_path last

endef

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format bench-data bench-losses bench-tsne bench-overhead \
	bench-throughput bench-device-data bench-device-pk gpu-check tb clean results-tables \
	cifar-transfer fmnist $(EXPERIMENTS)

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@echo "  <id>               fit then test experiments/<id>.yaml: $(EXPERIMENTS)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install lab with its dev tools

demo: $(STAMP) ## Digits on the CPU: cross-entropy vs triplet vs center loss, one table, one report
	$(call run,demo,demo,)
	$(call run,demo-triplet,demo-triplet,)
	$(call run,demo-center,demo-center,)
	$(LAB) summary demo demo-triplet demo-center
	$(LAB) report demo demo-triplet demo-center --out $(DEMO_REPORT)
	$(LAB) compare demo demo-triplet
	$(LAB) compare demo demo-center
	$(LAB) compare demo-triplet demo-center

$(filter-out $(MULTI_RUN),$(EXPERIMENTS)): %: $(STAMP)
	$(call run,$@,$@,)
	$(LAB) summary $@

q1-grayscale: $(STAMP) ## Tiny ImageNet in greyscale: CE, triplet, center
	$(call run,$@,$@,)
	$(call run,q1-triplet,$@-triplet,--config experiments/_base/grayscale.yaml)
	$(call run,q1-center,$@-center,--config experiments/_base/grayscale.yaml)
	$(LAB) summary $@ $@-triplet $@-center

# Sweeps that end by training their best setting (by val/acc) once more (lab sweep --final).
SWEEPS_FINAL := cifar-tiny-aug

$(filter-out $(SWEEPS_FINAL),$(SWEEPS)): %: $(STAMP)
	$(LAB) sweep --config experiments/$@.yaml --grid_file experiments/_sweeps/$@.yaml

$(SWEEPS_FINAL): %: $(STAMP)
	$(LAB) sweep --config experiments/$@.yaml --grid_file experiments/_sweeps/$@.yaml --final

q1-layerwise: $(STAMP) ## STL-10 MLP: greedy layer-wise autoencoder pretraining vs the same MLP from scratch, one table
	$(call run,q1-layerwise,q1-layerwise,)
	$(call run,q1-layerwise-scratch,q1-layerwise-scratch,)
	$(LAB) summary q1-layerwise q1-layerwise-scratch
	$(LAB) report q1-layerwise q1-layerwise-scratch --out lightning_logs/reports/q1-layerwise

# The last.ckpt of the newest contrastive run that has one (the rule of --ckpt_path last;
# honours $$LAB_LOGS), looked up when the recipe runs, so `make contrastive
# contrastive-linear` uses the run that just finished.
CONTRASTIVE_CKPT = $(shell ls $${LAB_LOGS:-lightning_logs}/contrastive/version_*/checkpoints/last.ckpt 2>/dev/null | sort -V | tail -n 1)

contrastive-linear contrastive-nn: %: $(STAMP) ## From the newest contrastive run: a linear probe / the encoder + FC trained end to end
	@test -n "$(CONTRASTIVE_CKPT)" || { echo "make $@: no contrastive checkpoint; run make contrastive first" >&2; exit 2; }
	$(call run,$@,$@,--model.init_args.backbone.init_args.weights=$(CONTRASTIVE_CKPT))
	$(LAB) summary contrastive $@

stl10-svm: $(STAMP) ## ImageNet ResNet-50 features of STL-10 + SVMs: 3 kernels x 3 scalings, one table
	$(LAB) svm --config experiments/stl10-svm.yaml

cifar-transfer: $(STAMP) ## CIFAR-10: from scratch vs fine-tuned vs 5 / 9 children frozen, one report
	$(MAKE) cifar-scratch cifar-finetune cifar-frozen
	$(LAB) report cifar-scratch cifar-finetune sweeps/cifar-frozen --out $(CIFAR_REPORT)

fmnist: $(STAMP) ## Fashion-MNIST on the CPU: cross-entropy vs triplet vs center loss, one table, one report
	$(call run,fmnist-ce,fmnist-ce,$(FMNIST_DATA))
	$(call run,fmnist-triplet,fmnist-triplet,$(FMNIST_DATA))
	$(call run,fmnist-center,fmnist-center,$(FMNIST_DATA))
	$(LAB) summary $(FMNIST)
	$(LAB) report $(FMNIST) --out $(FMNIST_REPORT)
	$(LAB) compare fmnist-ce fmnist-center
	$(LAB) compare fmnist-ce fmnist-triplet

$(FMNIST) fmnist-long fmnist-long-cpu: %: $(STAMP)
	$(call run,$@,$@,$(FMNIST_DATA))
	$(LAB) summary $@

# The last.ckpt of the newest fmnist-ce run (honours $$LAB_LOGS), looked up when the
# recipe runs: fmnist-svm and fmnist-transfer start from the backbone it trained.
FMNIST_CKPT = $(shell ls $${LAB_LOGS:-lightning_logs}/fmnist-ce/version_*/checkpoints/last.ckpt 2>/dev/null | sort -V | tail -n 1)
FMNIST_NEEDS_CKPT = @test -n "$(FMNIST_CKPT)" || { echo "make $@: no fmnist-ce checkpoint; run make fmnist-ce first" >&2; exit 2; }

fmnist-svm: $(STAMP) ## SVMs on the newest fmnist-ce backbone's features and on raw pixels, one table
	$(FMNIST_NEEDS_CKPT)
	$(LAB) svm --config experiments/fmnist-svm.yaml \
		--backbone.init_args.weights=$(FMNIST_CKPT) $(FMNIST_DATA)

fmnist-transfer: $(STAMP) ## Digits from the fmnist-ce backbone: head only vs all layers vs from scratch, one table
	$(FMNIST_NEEDS_CKPT)
	$(call run,$@,$@-head,--model.init_args.backbone.init_args.weights=$(FMNIST_CKPT))
	$(call run,$@,$@-all,--model.init_args.backbone.init_args.weights=$(FMNIST_CKPT) \
		--model.init_args.trainable=all)
	$(call run,$@,$@-scratch,--model.init_args.trainable=all)
	$(LAB) summary $@-head $@-all $@-scratch
	$(LAB) report $@-head $@-all $@-scratch --out lightning_logs/reports/$@

test: $(STAMP) lint ## Lint, then run the whole test suite (slow tests included), on up to 4 cores
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check lab tests
	$(BIN)/ruff format --check lab tests

format: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix lab tests
	$(BIN)/ruff format lab tests

bench-data: $(STAMP) ## Images/s through the train loader: decoded cache vs JPEG decoding
	$(BIN)/python -m lab.commands.bench.dataloader --images 10000

bench-losses: $(STAMP) ## Batch-hard triplet forward + backward: ours vs pytorch-metric-learning
	$(BIN)/python -m lab.commands.bench.losses --batch 512 --dim 128

bench-tsne: $(STAMP) ## t-SNE of 10,000 x 512 points: openTSNE (FFT) vs scikit-learn seconds, 1-NN quality, ratio
	$(BIN)/python -m lab.commands.bench.tsne --points 10000 --dim 512

bench-overhead: $(STAMP) ## Time per training step: lab's Classifier under Lightning vs a hand-written loop
	$(LAB) bench overhead --batch 64 --image_size 32 --steps 10 --repeats 5

bench-throughput: $(STAMP) ## Training images/s of ResNet-18 at 32 and 64 px for each preset this machine has
	$(LAB) bench throughput --sizes 32 64 --steps 10

bench-device-data: $(STAMP) ## Images/s of the training loader: ordinary DataLoader vs images kept on the device
	$(LAB) bench dataloader --device-path --images 50000 --epochs 3 --workers 2 --batch-size 512

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
