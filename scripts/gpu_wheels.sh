#!/usr/bin/env bash
# Download into .whl/ the wheels an offline GPU machine lacks to run this project (then: BENCH_WHEELS=.whl make gpu-check).
# That machine has Python 3.12 with torch, timm, torchvision, torch-geometric, tabulate, rich, matplotlib,
# scikit-learn, pytest, pytest-benchmark, filelock, numpy, scipy and pandas preinstalled (and their dependencies).
# Each wheel is pinned to the version installed in .venv, where the project is tested.
#
# The list, computed by hand from pyproject.toml's main dependencies and their requirements in .venv:
#   main dependencies not on that machine: torchattacks, adversarial-robustness-toolbox, safetensors (timm requires it,
#     listed in case timm came without it), mlxtend, mnist1d, nas-bench-graph, optuna, tomli-w;
#   what they require that the machine's packages do not bring: six (adversarial-robustness-toolbox),
#     alembic, colorlog, mako, sqlalchemy (optuna; alembic requires mako and sqlalchemy).
# Everything else they require (requests, tqdm, joblib, packaging, pyyaml, typing-extensions, markupsafe, setuptools)
# comes with the preinstalled packages. gpu_check.sh installs the wheels with --no-deps, so a missing one shows as an ImportError.
set -eu
cd "$(dirname "$0")/.."

PACKAGES=(
    torchattacks adversarial-robustness-toolbox safetensors mlxtend mnist1d nas-bench-graph optuna tomli-w
    six alembic colorlog mako sqlalchemy
)
PIP=.venv/bin/pip
[ -x "$PIP" ] || { echo "gpu_wheels: $PIP not found: run make bench (or make test) first; the versions come from .venv" >&2; exit 2; }

pinned=()
for name in "${PACKAGES[@]}"; do
    version=$("$PIP" show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "gpu_wheels: $name is not installed in .venv" >&2; exit 2; }
    pinned+=("$name==$version")
done

mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl "${pinned[@]}"
echo "gpu_wheels: ${#pinned[@]} wheels in .whl/ (${pinned[*]}); on the GPU machine: BENCH_WHEELS=.whl make gpu-check"
