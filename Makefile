# RSCoVLM for QGIS — every entry point a user or CI needs.
#   make demo   synthetic scene -> model -> georeferenced detections (sets up first)
#   make test   the whole suite, headless (sets up first)
#   make test-vllm  the same pipelines against a real vLLM server (CPU build, demo model)

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
RSCOVLM := $(VENV)/bin/rscovlm
STAMP := $(VENV)/.setup-stamp
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.setup-stamp
OUT   ?= out/demo
DEMO_MODEL ?= $(firstword $(wildcard resources/demo-model) models/tiny)
# The shipped demo model (scripts/train_demo_model.sh) knows planes and storage tanks in
# 256 px tiles of 0.5 m scenes: the demo makes such a scene (a seed it never trained on)
# and scores its detections. The random tiny model gets the product's defaults.
ifeq ($(DEMO_MODEL),resources/demo-model)
DEMO_CLASSES ?= plane,storage tank
DEMO_SCENE   ?= --size 1024 --gsd 0.5 --seed 2001
DEMO_TOKENS  ?= 512
DEMO_DETECT  ?= --tile-size 256 --overlap 64 --classes "$(DEMO_CLASSES)"
else
DEMO_SCENE   ?= --size 2048 --seed 1
DEMO_TOKENS  ?= 256
endif
HEADLESS := QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 XDG_RUNTIME_DIR=/tmp/runtime-$(shell id -u)
PLUGIN := rscovlm_qgis
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)

.PHONY: lint openapi setup vllm-env demo test test-backend test-plugin test-vllm bench package run translations freeze screenshot clean help

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

setup: $(STAMP)

$(STAMP): scripts/setup.sh requirements.txt constraints.txt backend/pyproject.toml
	bash scripts/setup.sh
	@touch $@

# A separate environment with vLLM's CPU build, for the real-server tests (~6 GB, ~6 min).
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): scripts/setup_vllm.sh
	bash scripts/setup_vllm.sh
	@touch $@

models/tiny/config.json: | $(STAMP)
	$(HEADLESS) $(RSCOVLM) make-tiny-model models/tiny

demo: $(STAMP) $(if $(filter models/tiny,$(DEMO_MODEL)),models/tiny/config.json)
	@mkdir -p $(OUT)
	$(HEADLESS) $(RSCOVLM) synth $(OUT)/scene.tif --truth $(OUT)/truth.gpkg $(DEMO_SCENE)
	$(HEADLESS) $(RSCOVLM) detect $(OUT)/scene.tif -o $(OUT)/detections.gpkg --model $(DEMO_MODEL) \
	    --max-new-tokens $(DEMO_TOKENS) --responses-out $(OUT)/responses.jsonl $(DEMO_DETECT)
	$(if $(DEMO_CLASSES),$(HEADLESS) $(RSCOVLM) evaluate --pred $(OUT)/detections.gpkg --truth $(OUT)/truth.gpkg \
	    --classes "$(DEMO_CLASSES)" --convention dota_devkit --out $(OUT)/report)
	@echo
	@echo "Demo done. Open $(OUT)/scene.tif and $(OUT)/detections.gpkg in QGIS (ground truth: $(OUT)/truth.gpkg)."

test: $(STAMP) translations
	@mkdir -p /tmp/runtime-$$(id -u) && chmod 700 /tmp/runtime-$$(id -u)
	$(HEADLESS) $(PY) -m pytest $(PYTEST_ARGS)

test-backend: $(STAMP)
	$(HEADLESS) $(PY) -m pytest tests/backend $(PYTEST_ARGS)

test-plugin: $(STAMP) translations
	$(HEADLESS) $(PY) -m pytest tests/plugin $(PYTEST_ARGS)

# Starts `python -m vllm.entrypoints.openai.api_server` from .venv-vllm serving the demo
# model and runs the pipelines through it (tests/vllm; not part of `make test`).
test-vllm: $(STAMP) $(VLLM_STAMP)
	$(HEADLESS) $(PY) -m pytest tests/vllm $(PYTEST_ARGS)

bench: $(STAMP)
	$(HEADLESS) $(PY) bench/bench_merge.py
	$(HEADLESS) $(PY) bench/bench_overhead.py
	$(HEADLESS) $(PY) bench/bench_memory.py

# Compiled translations are build products (not committed).
translations: $(patsubst i18n/%.ts,$(PLUGIN)/i18n/%.qm,$(wildcard i18n/*.ts))

$(PLUGIN)/i18n/%.qm: i18n/%.ts
	@mkdir -p $(PLUGIN)/i18n
	lrelease -qt5 $< -qm $@ 2>/dev/null || lrelease $< -qm $@

package: translations
	@rm -rf build/package && mkdir -p build/package/$(PLUGIN) dist
	cp -r $(PLUGIN)/. build/package/$(PLUGIN)/
	cp metadata.txt LICENSE build/package/$(PLUGIN)/ 2>/dev/null || cp metadata.txt build/package/$(PLUGIN)/
	cp resources/icon.png build/package/$(PLUGIN)/icon.png
	find build/package -name __pycache__ -prune -exec rm -rf {} +
	find build/package \( -name '*.pyc' -o -name 'tests' -o -name '.*' \) -prune -exec rm -rf {} +
	cd build/package && rm -f ../../dist/$(PLUGIN)-$(VERSION).zip && zip -qr ../../dist/$(PLUGIN)-$(VERSION).zip $(PLUGIN)
	@echo "Plugin zip: dist/$(PLUGIN)-$(VERSION).zip"

# Real QGIS on your display, the plugin linked into the default profile, a backend running.
QGIS_PLUGINS := $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
RUN_URL := http://127.0.0.1:8765
run: $(STAMP) translations $(if $(filter models/tiny,$(DEMO_MODEL)),models/tiny/config.json)
	@mkdir -p $(QGIS_PLUGINS) && ln -sfn $(CURDIR)/$(PLUGIN) $(QGIS_PLUGINS)/$(PLUGIN)
	@$(PY) -c "from qgis.PyQt.QtCore import QSettings as S; s = S('$(QGIS_PLUGINS)/../../QGIS/QGIS3.ini', S.IniFormat); s.setValue('PythonPlugins/$(PLUGIN)', True); s.sync()"
	@if ! curl -sf $(RUN_URL)/health >/dev/null 2>&1; then \
	    echo "Starting the backend ($(DEMO_MODEL)), log: out/backend.log"; mkdir -p out; \
	    HF_HUB_OFFLINE=1 $(RSCOVLM) serve --model $(DEMO_MODEL) > out/backend.log 2>&1 & echo $$! > out/backend.pid; \
	fi
	qgis --noversioncheck; \
	if [ -f out/backend.pid ]; then kill $$(cat out/backend.pid) 2>/dev/null; rm -f out/backend.pid; fi

# docs/screenshot.png: real QGIS under Xvfb, the dock open, a detection (or the truth layer) shown.
screenshot: $(STAMP) translations models/tiny/config.json
	@mkdir -p out/demo out/screenshot
	@test -f out/demo/scene.tif || $(HEADLESS) $(RSCOVLM) synth out/demo/scene.tif --truth out/demo/truth.gpkg --size 2048 --seed 1
	RSCOVLM_TOKEN_FILE=$(CURDIR)/out/screenshot/token HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	    RSCOVLM_SCREENSHOT=$(CURDIR)/docs/screenshot.png xvfb-run -a -s "-screen 0 1600x1000x24" \
	    bash scripts/screenshot.sh $(CURDIR) out/demo/scene.tif

lint: $(STAMP)
	$(VENV)/bin/ruff check backend rscovlm_qgis tests bench scripts

# The HTTP API's schema, kept in the repo (a test fails when it is stale).
openapi: $(STAMP)
	$(RSCOVLM) serve --write-openapi docs/openapi.json

freeze: $(STAMP)
	@{ echo "# Exact versions measured working together on Debian 12 + QGIS 3.22 (pip freeze --local)."; \
	   echo "# Used as constraints by scripts/setup.sh; regenerate with 'make freeze'."; \
	   $(VENV)/bin/pip freeze --local | grep -v -e '^-e' -e rscovlm; } > constraints.txt

clean:
	rm -rf build dist out $(PLUGIN)/i18n/*.qm .pytest_cache
