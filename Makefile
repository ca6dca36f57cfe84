# avr-modularity — two commands set up a fresh machine:
#   make demo   the main job on a small built-in default
#   make test   every test: cargo test + the runner's failure test + all notebooks headless
# Both run `make setup` first (idempotent). Caches live in $(HOME)/.cache/avr-modularity.
SHELL := /bin/bash
ENV := . scripts/env.sh &&
SMOKE ?= 1
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: setup build test test-slurm lint test-browser demo bench bf16-check lab notebooks-full clean-cache study fuzz

setup:
	@bash scripts/setup.sh

build: setup
	$(ENV) cargo build --all-targets

test: build lint
	$(ENV) cargo test --all-targets
	$(ENV) bash tests/notebook_runner.sh
	$(ENV) AVR_SMOKE=$(SMOKE) python scripts/run_notebooks.py --html --out target/notebooks $(NOTEBOOKS)
	$(MAKE) test-browser
	$(MAKE) test-slurm

# The demo sweep on a real one-node Slurm (installs slurm-wlm + munge with apt when it can;
# says why and passes when the machine cannot: no root or no apt). ~2 min.
test-slurm: build
	$(ENV) bash tests/slurm.sh

# Habits: formatting, clippy with warnings as errors (missing docs included), notebook cells
# within 8 lines x 100 columns.
lint: build
	$(ENV) cargo fmt --check
	$(ENV) cargo clippy --all-targets -- -D warnings
	$(ENV) python scripts/notebook_lint.py $(NOTEBOOKS)

# The main job on a small built-in default: generate data → train SCL with milestones → masks for
# the 5 shapes at each milestone → analysis → report/index.html (scripts/demo_pipeline.sh);
# then the notebooks executed headless into HTML and the study's SCL_90 analysis through the CLI.
demo: build
	@mkdir -p report
	$(ENV) bash scripts/demo_pipeline.sh
	$(ENV) AVR_SMOKE=$(SMOKE) python scripts/run_notebooks.py --html --out report/notebooks $(NOTEBOOKS)
	$(ENV) bash scripts/demo_cli.sh report
	$(MAKE) test-browser
	@echo "demo: wrote report/index.html, report/notebooks/*.html and report/cli/"

# The study run at study scale (datasets/study/manifest.env; hours: run it niced in the
# background, it resumes where it stopped). STAGE=data|train|test|alpha|alpha-check|masks|report|all.
study: build
	$(ENV) bash scripts/study.sh $(or $(STAGE),all)

# Seeded mutation fuzzing of the .npz and pickle parsers for a bounded time (5 minutes each;
# `make test` runs the same targets for 10 s each).
fuzz: build
	$(ENV) AVR_FUZZ_SECONDS=300 cargo test --test fuzz -- --nocapture

# Training and mask-training throughput, ours and the naive PyTorch port side by side in one run
# (the figures of BENCHMARKS.md). Installs the full torch wheel set into its own venv once.
bench: build
	bash scripts/setup_pytorch_reference.sh
	$(ENV) python3 scripts/bench_throughput.py

# The bf16 pre-training check: a fixed 2,000-step run in f32 and in bf16, validation compared.
bf16-check: build
	$(ENV) bash scripts/bf16_check.sh

lab: setup
	$(ENV) jupyter lab notebooks/

# Re-execute the notebooks at full size and store their outputs in place (for the code host).
# A failed notebook keeps its committed outputs (NAME.failed.ipynb beside it). Cells may run for
# hours here: graph_modularity's toumei cell took over an hour on one core of the AVX2 machine.
notebooks-full: build
	$(ENV) AVR_SMOKE=0 python scripts/run_notebooks.py --timeout 14400 --out notebooks $(NOTEBOOKS)

clean-cache:
	rm -rf "$(HOME)/.cache/avr-modularity/target" "$(HOME)/.cache/avr-modularity/evcxr-tmp"

# Figures as a reader sees them: the executed notebooks' HTML (target/notebooks/*.html, from
# run_notebooks.py --html) and report/index.html in headless Chromium (installed when missing);
# screenshots and per-figure measurements go to target/browser-check/.
.PHONY: test-browser
test-browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	@files="$$(ls target/notebooks/*.html report/index.html 2>/dev/null)"; \
	if [ -z "$$files" ]; then \
	  echo "test-browser: nothing to check: no target/notebooks/*.html or report/index.html"; exit 1; \
	fi; \
	python3 scripts/browser_check.py $$files --out target/browser-check
