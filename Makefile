# make demo   train briefly on the bundled Bach chorales and generate 3 pieces into ./lstmidi-demo
# make test   the lint (ruff check + ruff format --check), then the test suite
# make lint   only the lint; `make format` formats and fixes what ruff can
# make tour   execute docs/tour.ipynb (train for a minute, generate, listen, look, evaluate)
# make wheel-check  build the wheel and sdist, install the wheel in a clean venv and generate from there
# make bench  measure speed and memory (`lstmidi benchmark speed`); writes docs/benchmarks.md and benchmarks/results-speed.json
# Each target installs what it needs first: a virtualenv in .venv with the pinned packages, and the
# Debian SoundFont when run as root (without it, audio falls back to a plain built-in synthesizer).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format tour wheel-check bench install soundfont chromium clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,score,studio]'
	touch $(STAMP)

install: $(STAMP) soundfont chromium

# the browser that tests/test_studio.py drives through Playwright (Debian's; `playwright install` downloads)
chromium:
	@if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) || \
		echo "warning: could not install chromium; the browser tests of lstmidi studio will be skipped"; \
	else echo "note: for the browser tests of lstmidi studio: sudo apt-get install chromium"; fi

soundfont:
	@if [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq fluid-soundfont-gm >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq fluid-soundfont-gm >/dev/null)) || \
		echo "warning: could not install fluid-soundfont-gm; audio uses the built-in synthesizer"; \
	else echo "note: for real instrument sounds: sudo apt-get install fluid-soundfont-gm"; fi

demo: install
	$(BIN)/lstmidi demo --force

LINTED := src tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

test: install lint
	$(BIN)/python -m pytest -q

tour: install
	$(BIN)/python .ci/tour

wheel-check: install
	.ci/wheel-check

bench: install
	$(BIN)/lstmidi benchmark speed --json benchmarks/results-speed.json --markdown docs/benchmarks.md --force

clean:
	rm -rf $(VENV) lstmidi-demo
