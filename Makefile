# Two entry points, each doing all set-up on a fresh Debian/Ubuntu machine (Python 3.11+):
#   make demo   real data -> data check -> two 5-fold cpu-recipe runs -> CV report -> blend -> validated submission
#   make test   the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist
# Two cpu-recipe runs with different seeds (~15 min each on 2 cores): blends pay with partners of
# equal strength (weak report models only dilute; measured in the README). Stacked: best nested-CV log-loss.
DEMO_RUNS := demo-cpu demo-cpu-s1

.PHONY: demo test install data bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision unpinned: the registry's newest builds (README explains why not a local +cpu wheel)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -c "import torch, torchvision.ops, timm, albumentations, kaggle" >/dev/null
	touch $@

# The real Fashion-MNIST: Debian's dataset-fashion-mnist (installed when root), or $$FKAGGLE_DATA.
data:
	@if [ -n "$$FKAGGLE_DATA" ] || [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif [ -n "$$CI" ]; then echo "error: real Fashion-MNIST missing and cannot be installed (not root); CI needs it" >&2; exit 1; \
	else echo "note: real Fashion-MNIST missing (sudo apt-get install dataset-fashion-mnist); tests on it will skip (they fail under CI=1)"; fi

demo: install data
	$(BIN)/fkaggle data check
	$(BIN)/fkaggle fold-train --recipe cpu --run demo-cpu
	$(BIN)/fkaggle fold-train --recipe cpu --seeds 1 --run demo-cpu-s1
	$(BIN)/fkaggle cv $(DEMO_RUNS)
	$(BIN)/fkaggle blend demo-cpu --name demo-single
	$(BIN)/fkaggle blend $(DEMO_RUNS) --method stack --name demo-blend
	$(BIN)/fkaggle validate submissions/demo-blend.csv
	$(BIN)/fkaggle score submissions/demo-blend.csv

test: install data
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install data
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/io_and_blend.py
	$(BIN)/python bench/time_to_accuracy.py --recipe cpu
	$(BIN)/python bench/scale.py

clean-demo:
	rm -rf oof/demo-* oof/cv oof/data-check submissions/demo-*
