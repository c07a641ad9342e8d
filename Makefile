# Two commands do all the set-up (see README.md):
#   make demo   create .venv, build the default bundle when missing, classify sample titles
#   make test   the test suite (.ci/run calls this)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.jobtitles-installed

.PHONY: demo test bundle clean-bundle

demo: bundle
	@echo "--- echo titles | jobtitles classify"
	@printf '%s\n' "Sr. Data Engineer – Remote £70k" "Praktikant (m/w/d) Marketing" "店长" \
	  "Registered Nurse - Nights" "Apply now" | $(BIN)/jobtitles classify

test: bundle
	$(BIN)/python -m pytest -q -p no:cacheprovider

bundle: $(STAMP)
	$(BIN)/jobtitles export --if-missing

# torch is installed first, pinned, so that nothing resolves the multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,test]'
	touch $(STAMP)

clean-bundle:
	rm -rf models/default models/encoders
