# Two entry points, each doing all set-up on a fresh Debian/Ubuntu machine (Python 3.11+):
#   make demo   real data -> data check -> `fkaggle auto --time-limit 20m` (sized k-fold runs, an honest
#               choice among runs and blends) -> validated, scored submission, the leaderboard, oof/report.html
#   make test   the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist
DEMO_LIMIT ?= 20m

.PHONY: demo test test-fast test-avx2 lint install data browser bench bench-auto bench-ablation bench-gpu gpu-carry clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision unpinned: the registry's newest builds (README explains why not a local +cpu wheel)
	$(BIN)/pip install -q -e '.[dev,track]'
	$(BIN)/python -c "import torch, torchvision.ops, timm, albumentations, kaggle, mlflow, selenium, html5lib, nbclient, ipykernel" >/dev/null
	touch $@

# The real Fashion-MNIST: Debian's dataset-fashion-mnist (installed when root), or $$FKAGGLE_DATA.
data:
	@if [ -n "$$FKAGGLE_DATA" ] || [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif [ -n "$$CI" ]; then echo "error: real Fashion-MNIST missing and cannot be installed (not root); CI needs it" >&2; exit 1; \
	else echo "note: real Fashion-MNIST missing (sudo apt-get install dataset-fashion-mnist); tests on it will skip (they fail under CI=1)"; fi

# A real browser for the report's tests: Debian's chromium and its chromedriver (installed when root).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	elif [ -n "$$CI" ]; then echo "error: chromium/chromedriver missing and cannot be installed (not root); CI needs them" >&2; exit 1; \
	else echo "note: chromium missing (sudo apt-get install chromium chromium-driver); the report's browser tests will skip (they fail under CI=1)"; fi

demo: install data
	$(BIN)/fkaggle data check
	$(BIN)/fkaggle auto --time-limit $(DEMO_LIMIT) --name demo
	$(BIN)/fkaggle validate submissions/demo.csv
	$(BIN)/fkaggle score submissions/demo.csv
	$(BIN)/fkaggle report
	@cat oof/autopilot/demo/leaderboard.md

PYTEST = $(BIN)/python -m pytest -q -p no:cacheprovider
# The fast tier on two one-thread workers: most of it is Python (the CLI, pandas, matplotlib), and
# two 2-thread trainings at once oversubscribe 2 cores (2 cores: 1:52-2:08 this way, 3:23 serially, 4:13
# as two 2-thread workers). The slow tier (real budgets, kills and resumes, Ray clusters) runs alone.
FAST_TIER = OMP_NUM_THREADS=1 $(PYTEST) -n 2 -m "not slow and not gpu"

# Everything but the `gpu` tier (CI's command; nothing is skipped there), the slowest listed.
test: install data browser
	$(FAST_TIER) --durations=10
	$(PYTEST) -m "slow and not gpu" --durations=25

# The inner loop: everything but the `slow` tier.
test-fast: install data browser
	$(FAST_TIER) --durations=10

# The suite as a CPU without bf16 runs it (most laptops: AVX2 only), on any x86 machine: oneDNN,
# ATen and MKL held to AVX2, so bf16 is emulated (slow) and `--amp auto` trains fp32.
AVX2_ONLY = ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
test-avx2:
	$(AVX2_ONLY) $(MAKE) test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install data
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/io_and_blend.py
	$(BIN)/python bench/time_to_accuracy.py --recipe cpu
	$(BIN)/python bench/time_to_accuracy.py --recipe fast
	$(BIN)/python bench/scale.py

# The autopilot under 5, 20 and 60 minute limits (85 minutes on one machine).
bench-auto: install data
	$(BIN)/python bench/auto.py --limits 5m,20m,60m

# airbench's tricks one at a time on one fold (docs/results.md): about 35 min on 2 cores.
bench-ablation: install data
	$(BIN)/python bench/ablation.py --epochs 3

# The GPU check (bench/gpu.sh, about 8 minutes on one GPU): exits 2 in one line without CUDA.
bench-gpu:
	bash bench/gpu.sh

# Wheels and real data in .gpu/ for a GPU machine without network (the device tool carries it).
gpu-carry:
	bash bench/gpu_carry.sh

clean-demo:
	rm -rf oof/demo-* oof/autopilot/demo oof/data-check submissions/demo.*
