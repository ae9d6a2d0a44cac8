# xai-bench: make help lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TEST_WORKERS ?= 2   # pytest-xdist processes of make test (one torch thread each; 0: no xdist)

.DEFAULT_GOAL := help
.PHONY: help install run run-resnet8 run-vgg roar finetune reproduce report figures test test-effects test-all lint format clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# Headless Chromium for tests/test_report_html.py (skipped without it): installed with apt-get
# where that is possible (root on Debian/Ubuntu); anywhere else a note, never a failure.
INSTALL_CHROMIUM = command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	command -v apt-get >/dev/null 2>&1 && echo "installing chromium (apt-get)" && \
	{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	{ apt-get update -qq >/dev/null 2>&1 && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
	echo "chromium not installed: tests/test_report_html.py will be skipped"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@$(INSTALL_CHROMIUM)
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its test tools (idempotent), and chromium where apt-get can
	@$(INSTALL_CHROMIUM)

EMBEDDED := overview,gallery,sanity_checks,pixel_perturbation,deletion_insertion,class_sensitivity,efficiency
XB := OMP_NUM_THREADS=1 $(BIN)/xai-bench

run: $(STAMP) ## the embedded default: trains small models once, runs every benchmark but ROAR and fine-tuning briefly, writes outputs/embedded/summary.md
	$(MAKE) --no-print-directory -j2 run-resnet8 run-vgg
	$(BIN)/python scripts/summarize.py outputs/embedded

# The two halves of `make run`, one per CPU core (each single-threaded; no shared files).
run-resnet8: $(STAMP) ## half of make run: ResNet-8 on shapes (every benchmark) and the input-invariance MLP
	$(XB) -m experiment=embedded benchmark=$(EMBEDDED)
	$(XB) experiment=input_invariance experiment_name=embedded

run-vgg: $(STAMP) ## half of make run: the deep vgg16_small on shapes_multi (class sensitivity, per-block variants, pointing games)
	$(XB) -m experiment=embedded_multi benchmark=overview,class_sensitivity,sanity_checks,pointing_game,pointing_game_restricted
	$(XB) experiment=embedded_blocks

# One run per method, two at a time (Hydra's joblib launcher, one core and one thread each: a
# small retrain is slower on two threads than on one); roar_figure.py draws all methods together.
# The order balances the two cores (jobs start in this order as a core frees): PruneGrad's
# calibrated maps are the longest job, so it runs beside Grad-CAM and gradient, then OPPSD and
# random (measured: 10 min 56 s in the old order, one core idle for the last 2 minutes).
ROAR_METHODS := [prunegrad],[gradcam],[gradient],[oppsd_noble],[random]
roar: $(STAMP) ## ROAR on the embedded default: 5 methods x 5 fractions, 25 small retrains, two at a time (CPU)
	$(XB) -m hydra/launcher=joblib hydra.launcher.n_jobs=2 experiment=embedded_roar \
		'benchmark.methods=$(ROAR_METHODS)'
	$(BIN)/python scripts/roar_figure.py outputs/embedded

finetune: $(STAMP) ## Group-CAM fine-tuning vs plain fine-tuning on the embedded default (CPU)
	OMP_NUM_THREADS=1 $(BIN)/xai-bench experiment=embedded_finetune

# The papers' figures and tables (xai_bench/configs/experiment/<paper>/<result>.yaml), two runs at
# a time on a CPU; SCALE=paper submits the paper-scale sweeps to SLURM (docs/reproduce.md).
SCALE ?= embedded
REPRODUCE_ARGS ?=
reproduce: $(STAMP) ## every paper experiment at SCALE=embedded (CPU, offline) or SCALE=paper (SLURM); finished runs are skipped
	$(BIN)/python scripts/reproduce.py --scale $(SCALE) $(if $(filter paper,$(SCALE)),--launcher slurm) $(REPRODUCE_ARGS)

# Reads stored results only (seconds); an experiment without results is listed as not run.
report: $(STAMP) ## the report of SCALE: our numbers beside the papers', figures, claim verdicts (outputs/report/report.md, one self-contained report.html)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/make_report.py --scale $(SCALE)

# Stored results only (seconds): no model, no map is computed; OUT/SCALE/index.md lists every
# experiment, drawn or MISSING with the command that runs it.
OUT ?= outputs/figures
FORMATS ?= png
figures: $(STAMP) ## the papers' figures of SCALE from stored results, the paper's numbers beside ours (OUT/SCALE/<paper>/<result>.png + .md; FORMATS=png,pdf for vector files too)
	$(BIN)/python scripts/make_figures.py --scale $(SCALE) --out $(OUT) --formats $(FORMATS)

test: $(STAMP) ## run the test suite (not gpu, not effects) and ruff
	$(BIN)/ruff check xai_bench tests scripts
	$(BIN)/python -m pytest -m "not gpu and not effects" -n $(TEST_WORKERS) --dist load $(PYTEST_ARGS)

test-effects: $(STAMP) ## the papers' effects on the trained embedded models (about 5 min; XAI_BENCH_EFFECT_SEED=N)
	$(BIN)/python -m pytest -m effects $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check xai_bench tests scripts
	$(BIN)/ruff format --check xai_bench tests scripts

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix xai_bench tests scripts
	$(BIN)/ruff format xai_bench tests scripts

clean: ## remove caches and outputs (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
