# Two commands a new machine needs: `make demo` (run Self-Instruct on the embedded model) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# llama-cpp-python compiles from source; the LLaVA part is not needed and costs about a minute.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/selfinstruct run --out runs/demo --num-instructions 20

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs
