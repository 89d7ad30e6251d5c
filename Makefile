# make demo   - set up, build artifacts, serve, render assets/sample.wav to out/demo.mp4, stop
# make test   - set up, build artifacts, run the whole test suite (starts its own server)
# make test-unit - the tests that need no tritonserver (a quick loop)
# make lint   - ruff (lint, format check) over the whole tree, mypy over the packages, scripts and perf, import-linter over the layers
# make train  - retrain the demo avatar's networks into checkpoints/ (about 18 min on 2 cores)
# make serve  - serve the model repository on 127.0.0.1 (gRPC 8001, HTTP 8000) until Ctrl-C
# make cluster - two replicas behind nginx (gRPC 8001, HTTP 8000) with Prometheus (9090), loopback, until Ctrl-C
# make failover - a live stream through the cluster while a replica is killed: report in out/failover/
# make web    - serve the model repository and the web page (http://127.0.0.1:8080/: microphone, files) until Ctrl-C
# make agent  - serve the model repository and the example voice agent (http://127.0.0.1:8090/, WebRTC) until Ctrl-C
# make bench  - benchmark report in out/bench/ (perf/bench.py): CPU runtimes and precisions, ensemble, baseline
# make bench-catalog - many avatars: start time, memory per avatar, cold start, round robin, eviction (perf/catalog.py)
# make bench-web - the web page's live mode in headless Chromium: speech-to-picture latency (perf/web_latency.py)
# make bench-agent - the example agent over WebRTC in headless Chromium: first frame, barge-in, sync, bitrate (perf/agent.py)
# make bench-conversations - N Pipecat conversations on one server: voice stretch, late slots, first frame (perf/conversations.py)
# make bench-ort - ONNX Runtime settings for the UNet side by side (perf/ort_sweep.py)
# make bench-gpu - UNet + compositing + nvJPEG frames/s on a CUDA machine (perf/gpu_bench.py)
# make perf-analyzer - perf_analyzer concurrency sweep, CSV in out/perf/
# make overload - twice the sustainable rate for 60 s: nothing lost, served p99 within the wait bound
#                (CLUSTER=127.0.0.1:8001: through a running `make cluster`, with what its Prometheus saw)
# make soak   - 1000 mixed requests: no failures, flat RSS and /dev/shm (perf/soak.py)
# make loadtest - Locust live streams (200 ms chunks over HTTP): how many the server keeps up with, per demo version
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
# The generated artifacts are rebuilt when any file they are built from changes: the build
# script, every project module it imports, the checkpoints and templates (derived, not listed).
ARTIFACT_SOURCES := $(shell $(PYTHON) scripts/artifact_sources.py)
ifeq ($(ARTIFACT_SOURCES),)
$(error scripts/artifact_sources.py listed no sources: run it to see why)
endif

.PHONY: demo test test-unit tools lint train serve cluster failover web agent bench-web bench-agent bench-conversations bench-create bench bench-catalog bench-ort bench-gpu overload soak perf-analyzer loadtest setup artifacts clean

setup: $(STAMPS)/venv
artifacts: $(STAMPS)/artifacts

# The protocol, the client and the server are three distributions: installed together, their
# dependencies on triton-lipsync-protocol are met by ./protocol.
$(STAMPS)/venv: pyproject.toml client/pyproject.toml protocol/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./protocol -e "./client[web,pipecat,agent]" -e ".[cpu,build,test,bench,lint]"
	@mkdir -p $(STAMPS) && touch $@

# --rebuild replaces only what the build itself writes: avatars and versions that users add to
# model_repository/ (lipsync-server import, quantize) stay as they are.
$(STAMPS)/artifacts: $(STAMPS)/venv $(ARTIFACT_SOURCES)
	$(PY) scripts/build_artifacts.py --rebuild
	@mkdir -p $(STAMPS) && touch $@

demo: artifacts
	$(PY) scripts/run_demo.py --output out/demo.mp4

test: artifacts tools
	$(PY) -m pytest

# System tools the tests and `make cluster` run, from Debian's packages: prometheus (with
# promtool: the autoscaling rules), nginx (the load balancer), chromium (the pages' tests) and
# espeak-ng (the example agent's voice).
tools:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test-unit: artifacts tools
	$(PY) -m pytest -m "not integration"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/lint_layers.py

train: setup
	rm -rf build/dataset/demo_train
	$(PY) scripts/train_demo.py

serve: artifacts
	$(VENV)/bin/lipsync-server serve

cluster: artifacts tools
	$(VENV)/bin/lipsync-server cluster

failover: artifacts tools
	$(PY) perf/failover.py

web: artifacts
	$(PY) scripts/run_web.py

agent: artifacts tools
	$(PY) scripts/run_agent.py

bench-web: artifacts tools
	$(PY) perf/web_latency.py

bench-agent: artifacts tools
	$(PY) perf/agent.py

bench-conversations: artifacts tools
	$(PY) perf/conversations.py

bench-create: artifacts
	$(PY) perf/create.py

bench: artifacts
	$(PY) perf/bench.py

bench-catalog: artifacts
	$(PY) perf/catalog.py

bench-ort: artifacts
	$(PY) perf/ort_sweep.py

bench-gpu: setup
	$(PY) perf/gpu_bench.py

overload: artifacts
	$(PY) perf/overload.py $(if $(CLUSTER),--cluster $(CLUSTER))

soak: artifacts
	$(PY) perf/soak.py

$(STAMPS)/perf_analyzer: $(STAMPS)/venv scripts/install_perf_analyzer.sh
	scripts/install_perf_analyzer.sh $(VENV)
	@touch $@

perf-analyzer: artifacts $(STAMPS)/perf_analyzer
	$(PY) perf/perf_analyzer_sweep.py

loadtest: artifacts
	$(PY) perf/loadtest.py

# Removes what make wrote (out/ and build/ are make's alone) and never a user's avatar or version.
clean:
	if [ -x $(PY) ]; then $(PY) scripts/build_artifacts.py --clean; fi
	rm -rf $(STAMPS) out build
	if [ -d assets ]; then rmdir --ignore-fail-on-non-empty assets; fi
