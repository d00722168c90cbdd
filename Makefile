# The two set-up commands of the README: `make demo` (the main job) and `make test`.
.PHONY: setup demo test lint llamacpp

VENV := .venv/bin

setup:
	@bash scripts/setup.sh

# The demo's data come from PyPI data packages (and the package itself): no hub, no mirror.
# `specfair experiment study` also needs GSM8K/MGSM: `specfair data fetch --data-root DIR`.
# `make demo DEMO_FLAGS="--dtype float32"`: the fp32 path of a CPU without bf16, on one with it.
demo: setup
	$(VENV)/specfair models fetch
	$(VENV)/specfair data fetch sharegpt hsk
	$(VENV)/specfair experiment demo $(DEMO_FLAGS)

lint: setup
	$(VENV)/ruff check src tests benchmarks

# pytest exits 5 when it collects no test: that fails here like any other non-zero status.
test: setup lint
	$(VENV)/python -m pytest -p no:cacheprovider tests

# Build llama.cpp's llama-server for `specfair bench --backend llamacpp` (cached; ~17 min on 2 cores).
llamacpp: setup
	$(VENV)/specfair backends install llamacpp
