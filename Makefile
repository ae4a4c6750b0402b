# Two entry points for a fresh clone: `make demo` and `make test`.
# Everything is installed into .venv from the pinned constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --constraint constraints.txt
BACKENDS := jax tensorflow torch numpy
# The backend `make demo` and `make bench` run on: KERAS_BACKEND, else jax.
BACKEND := $(or $(KERAS_BACKEND),jax)
DEMO_PACKAGES_jax := ".[jax,demo]"
DEMO_PACKAGES_torch := ".[torch,demo]"
DEMO_PACKAGES_tensorflow := ".[demo]" tensorflow-cpu
DEMO_PACKAGES_numpy := ".[jax,demo]"

.PHONY: demo test test-% bench mutation clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps record what was installed, and are redone when the pins change.
$(VENV)/.demo-%-installed: $(PY) constraints.txt setup.cfg
	$(PIP) --editable $(DEMO_PACKAGES_$*)
	touch $@

# tensorflow-cpu, not the tensorflow extra: same package, no GPU libraries.
$(VENV)/.test-installed: $(PY) constraints.txt setup.cfg
	$(PIP) --editable ".[jax,torch,test,demo,bench,export]" tensorflow-cpu
	touch $@ $(foreach b,$(BACKENDS),$(VENV)/.demo-$(b)-installed)

demo: $(VENV)/.demo-$(BACKEND)-installed
	KERAS_BACKEND=$(BACKEND) $(PY) -m keras_jax_pool demo

# Keras fixes its backend at import, so each backend's suite runs in its own
# process. All four run even if one fails; the target fails if any did.
# Two pytest workers (pytest-xdist): most tests wait on one-threaded compiles.
test: $(VENV)/.test-installed
	@failed=""; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b"; \
	  KERAS_BACKEND=$$b TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest tests -q -p no:cacheprovider -n 2 || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED on:$$failed"; exit 1; fi; echo "all backends passed"

test-%: $(VENV)/.test-installed
	KERAS_BACKEND=$* $(PY) -m pytest tests -q -p no:cacheprovider -n 2

# Mutation testing (see the README): not part of `make test`, it is slow. One
# worker, so that it leaves a core free; results stay in mutants/.
$(VENV)/.mutation-installed: $(VENV)/.test-installed
	$(PIP) mutmut
	touch $@

mutation: $(VENV)/.mutation-installed
	rm -rf mutants
	KERAS_BACKEND=numpy TF_CPP_MIN_LOG_LEVEL=3 $(VENV)/bin/mutmut run --max-children 1
	$(VENV)/bin/mutmut results

bench: $(VENV)/.test-installed
	KERAS_BACKEND=$(BACKEND) $(PY) -m keras_jax_pool bench

clean:
	rm -rf $(VENV) build *.egg-info
