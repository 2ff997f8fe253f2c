# One-command entry points. Each target creates the virtual environment (.venv) and installs
# requirements.txt on first use, so a fresh clone needs nothing but python3 (3.10+) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench templates clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	bash scripts/run_demo.sh

templates: $(STAMP)
	$(PY) -m preprocess_data.render_views --template synthbody --view-set 4MV-Z_Vitru --sizes 1024 256

bench: $(STAMP)
	$(PY) -m bench.lift

clean-venv:
	rm -rf $(VENV)
