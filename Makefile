# The README's two commands: `make bench` (set up, run the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: bench test benchmark lint clean chromium latex gpu-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch and torchvision first, pinned: pip takes them from local disk
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/bench run --track adversarial

test: $(STAMP) chromium latex
	$(BIN)/python -m pytest -q

# The browser test needs Debian's chromium. Install it when missing and possible
# (root, apt-get); otherwise that test skips. Never fails the build.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the browser test"; \
		(DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
			|| echo "could not install chromium: the browser test will skip"; \
	else echo "no chromium and no root apt-get: the browser test will skip"; fi

# The LaTeX compile test needs pdflatex (Debian's texlive-latex-base and -recommended, about 40 s).
# Installed when missing and possible (root, apt-get); otherwise that test skips. Never fails the build.
latex:
	@if command -v pdflatex >/dev/null 2>&1 || command -v tectonic >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing pdflatex (apt-get) for the LaTeX compile test"; \
		(DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended) >/dev/null 2>&1 \
			|| echo "could not install pdflatex: the LaTeX compile test will skip"; \
	else echo "no pdflatex and no root apt-get: the LaTeX compile test will skip"; fi

benchmark: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-only -q

# The one prepared device check (scripts/gpu_check.sh): GPU tests, the default tracks on CUDA (the adversarial one
# compared with a CPU run of the same machine), GPU benchmarks, within 8 minutes; report in runs/gpu-check/. Without CUDA one line and exit 0. Needs no venv and
# installs nothing (BENCH_WHEELS=folder of wheels: installed into a temporary folder, for an offline GPU machine).
gpu-check:
	@bash scripts/gpu_check.sh

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
