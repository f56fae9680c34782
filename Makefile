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
DEMO_REPORT ?= lightning_logs/reports/demo
# Experiments: every experiments/<id>.yaml (files starting with _ are shared presets).
EXPERIMENTS := $(sort $(basename $(notdir $(wildcard experiments/[!_]*.yaml))))
# Targets that run more than their YAML once (rules below); sweeps run _sweeps/<id>.yaml grids.
SWEEPS := $(sort $(basename $(notdir $(wildcard experiments/_sweeps/*.yaml))))
GRAYSCALE := --config experiments/_base/grayscale.yaml
FMNIST := fmnist-ce fmnist-triplet fmnist-center
# The Fashion-MNIST twins of q1-layerwise and the contrastive family (make fmnist-representation).
FMNIST_REP := fmnist-layerwise fmnist-layerwise-scratch fmnist-contrastive fmnist-contrastive-z32 \
	fmnist-contrastive-linear fmnist-contrastive-nn
MULTI_RUN := demo q1-grayscale q1-layerwise stl10-svm contrastive-linear contrastive-nn $(SWEEPS) \
	fmnist-svm fmnist-transfer $(filter-out fmnist-layerwise-scratch fmnist-contrastive-z32,$(FMNIST_REP))
CIFAR_REPORT ?= lightning_logs/reports/cifar-transfer
# fmnist-* read the Debian package's files if installed (else FMNIST_DATA=--data.init_args.download=true).
FMNIST_FOLDER ?= $(wildcard /usr/share/datasets/fashion-mnist)
FMNIST_DATA ?= $(if $(FMNIST_FOLDER),--data.init_args.folder=$(FMNIST_FOLDER))
FMNIST_REPORT ?= lightning_logs/reports/fmnist
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
# $(call runs,<ids>,<extra arguments>): $(call run) each id under its own name.
runs = $(foreach id,$(1),$(call run,$(id),$(id),$(2)))

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format $(BENCHES) bench-device-pk gpu-check tb clean \
	results-tables cifar-transfer fmnist fmnist-representation $(EXPERIMENTS)

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@echo "  <id>               fit then test experiments/<id>.yaml: $(EXPERIMENTS)"
	@echo "  bench-<x>          lab bench <x> (\`lab bench\` says what each measures): $(BENCHES)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
install: $(STAMP) ## Create .venv and install lab with its dev tools

demo: $(STAMP) ## Digits on the CPU: cross-entropy vs triplet vs center loss, one table, one report
	$(call runs,demo demo-triplet demo-center,)
	$(LAB) summary demo demo-triplet demo-center --min test/acc=0.98
	$(LAB) report demo demo-triplet demo-center --out $(DEMO_REPORT)
	$(LAB) compare demo demo-triplet
	$(LAB) compare demo demo-center
	$(LAB) compare demo-triplet demo-center

$(filter-out $(MULTI_RUN),$(EXPERIMENTS)): %: $(STAMP)
	$(call run,$@,$@,$(if $(filter fmnist-%,$@),$(FMNIST_DATA)))
	$(LAB) summary $@

q1-grayscale: $(STAMP) ## Tiny ImageNet in greyscale: CE, triplet, center
	$(call run,$@,$@,)$(foreach v,triplet center,$(call run,q1-$(v),$@-$(v),$(GRAYSCALE)))
	$(LAB) summary $@ $@-triplet $@-center

# Sweeps that end by training their best setting (by val/acc) once more (lab sweep --final).
SWEEPS_FINAL := cifar-tiny-aug

$(SWEEPS): %: $(STAMP)
	$(LAB) sweep --config experiments/$@.yaml --grid_file experiments/_sweeps/$@.yaml$(if \
		$(filter $@,$(SWEEPS_FINAL)), --final)
q1-layerwise: $(STAMP) ## STL-10 MLP: greedy layer-wise autoencoder pretraining vs the same MLP from scratch, one table
	$(call runs,q1-layerwise q1-layerwise-scratch,)
	$(LAB) summary q1-layerwise q1-layerwise-scratch
	$(LAB) report q1-layerwise q1-layerwise-scratch --out lightning_logs/reports/q1-layerwise

# Weights `last:<experiment>`: its newest last.ckpt, found by lab when the run starts.
WEIGHTS := --model.init_args.backbone.init_args.weights

ENCODER = $(patsubst %-linear,%,$(patsubst %-nn,%,$@))
contrastive-linear contrastive-nn fmnist-contrastive-linear fmnist-contrastive-nn: %: $(STAMP) ## From the newest (fmnist-)contrastive run: a linear probe / the encoder + FC end to end
	$(call run,$@,$@,$(WEIGHTS)=last:$(ENCODER) $(if $(filter fmnist-%,$@),$(FMNIST_DATA)))
	$(LAB) summary $(ENCODER) $@
stl10-svm: $(STAMP) ## ImageNet ResNet-50 features of STL-10 + SVMs: 3 kernels x 3 scalings, one table
	$(LAB) svm --config experiments/stl10-svm.yaml
cifar-transfer: $(STAMP) ## CIFAR-10: from scratch vs fine-tuned vs 5 / 9 children frozen, one report
	$(MAKE) cifar-scratch cifar-finetune cifar-frozen
	$(LAB) report cifar-scratch cifar-finetune sweeps/cifar-frozen --out $(CIFAR_REPORT)

fmnist: $(STAMP) ## Fashion-MNIST on the CPU: cross-entropy vs triplet vs center loss, one table, one report
	$(call runs,$(FMNIST),$(FMNIST_DATA))
	$(LAB) summary $(FMNIST)
	$(LAB) report $(FMNIST) --out $(FMNIST_REPORT)
	$(LAB) compare fmnist-ce fmnist-center
	$(LAB) compare fmnist-ce fmnist-triplet
fmnist-layerwise: $(STAMP) ## Fashion-MNIST, 500 labels a class: layer-wise pretrained MLP vs the same MLP from scratch
	$(call runs,$@ $@-scratch,$(FMNIST_DATA))
	$(LAB) compare $@ $@-scratch
fmnist-contrastive: $(STAMP) ## Fashion-MNIST: the contrastive encoder (in-batch random triplets), z_dim 64 and 32
	$(call run,$@,$@,$(FMNIST_DATA))$(call run,$@,$@-z32,$(FMNIST_DATA) $(WEIGHTS:weights=embedding_dim)=32)
fmnist-representation: $(STAMP) ## The five Fashion-MNIST twins of layer-wise pretraining and contrastive, one report
	$(MAKE) fmnist-layerwise fmnist-contrastive fmnist-contrastive-linear fmnist-contrastive-nn
	$(LAB) summary $(FMNIST_REP)
	$(LAB) report $(FMNIST_REP) --out lightning_logs/reports/fmnist-representation
fmnist-svm: $(STAMP) ## SVMs on the newest fmnist-ce backbone's features and on raw pixels, one table
	$(LAB) svm --config experiments/fmnist-svm.yaml --backbone.init_args.weights=last:fmnist-ce $(FMNIST_DATA)
fmnist-transfer: $(STAMP) ## Digits from the fmnist-ce backbone: head only vs all layers vs from scratch, one table
	$(call run,$@,$@-head,$(WEIGHTS)=last:fmnist-ce)
	$(call run,$@,$@-all,$(WEIGHTS)=last:fmnist-ce --model.init_args.trainable=all)
	$(call run,$@,$@-scratch,--model.init_args.trainable=all)
	$(LAB) summary $@-head $@-all $@-scratch
	$(LAB) report $@-head $@-all $@-scratch --out lightning_logs/reports/$@

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
