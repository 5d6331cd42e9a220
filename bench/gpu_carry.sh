#!/usr/bin/env bash
# Prepare .gpu/ for the device tool's machine, which has PyTorch, timm, pandas and scikit-learn
# but no network: the wheels of what its image lacks (Python 3.12, x86-64) and the real
# Fashion-MNIST IDX files. Run here, then carry .gpu (ignored by git) with `bash bench/gpu.sh`.
# Ray's wheel (~70 MB) is over what the tool carries: the Ray step says so there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu/wheels .gpu/data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/wheels \
  albumentations==2.0.8 albucore==0.0.24 stringzilla simsimd pydantic pydantic-core annotated-types typing-inspection \
  tomli-w jsonschema jsonschema-specifications referencing rpds-py
cp "${FKAGGLE_DATA:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz .gpu/data/
du -sh .gpu
