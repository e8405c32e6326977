# Two entry points for a new machine: `make demo` and `make test`. Both create .venv and install
# hyperscene into it first, with torch pinned to the CPU build (constraints.txt), and the optional
# OpenVINO embedder (--embedder openvino): the `openvino` extra, then optimum-intel with --no-deps,
# since it declares torchvision and no torchvision build works with the CPU torch wheel.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE := examples/sample-corpus
OPTIMUM_INTEL := optimum-intel==2.2.0
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test clean

$(BIN)/hyperscene: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt torch -e ".[test,openvino]"
	$(PIP) --no-deps $(OPTIMUM_INTEL)
	touch $@

install: $(BIN)/hyperscene

demo: install
	rm -rf demo
	$(BIN)/hyperscene compress $(SAMPLE) --out demo/store
	$(BIN)/hyperscene decompress demo/store --out demo/restored
	cmp $(SAMPLE)/alice-in-wonderland.txt demo/restored/alice-in-wonderland.txt
	cmp $(SAMPLE)/sign-of-the-four.md demo/restored/sign-of-the-four.md
	gzip -dc $(SAMPLE)/origin-of-species.txt.gz | cmp - demo/restored/origin-of-species.txt
	@echo "round trip: restored files are byte-identical to the originals"
	$(BIN)/hyperscene inspect demo/store

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo *.egg-info
