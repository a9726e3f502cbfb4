# vqart: `make demo` runs the main job end to end, `make test` runs the whole suite.
# Both run `make setup` first: idempotent, and quick once everything is in place.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
VQART  := $(VENV)/bin/vqart
RUN    ?= runs/demo

.PHONY: setup browser demo test bench clean

setup: $(VENV)/.installed web/node_modules/.installed browser

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Reuse a Chromium that exists; on Debian as root install the distribution's; else say what to run.
browser: $(VENV)/.installed
	$(PY) -m vqart.capture.browser --install

# Under 10 minutes on a 2-core CPU: capture, 4 minutes of training, 1.5 each for the spatial and motion priors.
demo: setup
	$(VQART) capture sketches/ --out data/
	$(VQART) train --data data/ --out $(RUN) --minutes 4 --force
	$(VQART) prior $(RUN) --minutes 1.5
	$(VQART) prior $(RUN) --motion --minutes 1.5
	$(VQART) dream $(RUN) --mode walk -o $(RUN)/dream.gif --seed 0
	$(VQART) dream $(RUN) --mode walk -o $(RUN)/dream.mp4 --seed 0
	$(VQART) dream $(RUN) --mode motion --frames 240 -o $(RUN)/motion.gif --start lissajous:100 --seed 0
	$(VQART) dream $(RUN) --mode motion --frames 240 -o $(RUN)/motion.mp4 --start lissajous:100 --seed 0
	@echo "Done. Frames in data/, the model in $(RUN)/ (see progression.png), dreams: $(RUN)/dream.gif, dream.mp4,"
	@echo "motion.gif and motion.mp4. Play with it live: $(VQART) serve $(RUN)"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf runs benchmarks/out .pytest_cache
