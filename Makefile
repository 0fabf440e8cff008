# The two set-up commands of the README: `make demo` and `make test`.
# Node and Deno come from PyPI wheels (the plugins' extras); curl (the demo), php-cli (the
# PHP example) and ruby (examples/ort_ruby, a third-party language plugin) are Debian's,
# installed with apt-get when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := ./plugins/ort_python ./plugins/ort_node ./plugins/ort_deno ./plugins/ort_apm
PLUGINS_WITH_EXTRAS := ./plugins/ort_python './plugins/ort_node[node]' './plugins/ort_deno[deno]' \
	'./plugins/ort_apm[test]' './examples/ort_ruby[test]'

.PHONY: install system-packages demo test lint bench clean soak

install: system-packages $(VENV)/.installed

system-packages:
	@missing=""; \
	for tool in curl:curl php:php-cli openssl:openssl ruby:ruby; do \
	  command -v "$${tool%%:*}" >/dev/null || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml plugins/*/pyproject.toml examples/ort_ruby/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[serve,test]' $(addprefix -e ,$(PLUGINS_WITH_EXTRAS))
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# About 10,000 invocations with 1% injected faults through `ort emulate` and `ort serve`, every
# bridge at once; prints sent/answered/lost and each server's processes, descriptors and RSS.
soak: install
	$(BIN)/python tests/soak.py

clean:
	rm -rf $(VENV)

# Benchmarks run on regular (not editable) installs, as users and layers have them.
# `make bench` is bench/all.py: every runtime against awslambdaric and bare Runtime API loops,
# writing bench/results.md and its plots (matplotlib). `make bench-more` runs the others:
# gateway.py compares `ort serve` with Google's functions-framework, which gets a virtualenv of
# its own (it pins cloudevents < 2 and ORT needs 2); wrk (the load generator) is Debian's.
BENCH_VENV ?= .venv-bench
BENCH_FF_VENV ?= $(BENCH_VENV)/ff
.PHONY: bench-venv bench-more
bench-venv:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps . $(PLUGINS)
	$(BENCH_VENV)/bin/python -m pip install --quiet '.[serve]' $(PLUGINS_WITH_EXTRAS) awslambdaric \
	  matplotlib

bench: bench-venv
	cd bench && ../$(BENCH_VENV)/bin/python all.py

bench-more: bench-venv
	@command -v wrk >/dev/null || { \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); echo "apt-get install wrk"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BENCH_VENV)/bin/python -m pip install --quiet opentelemetry-sdk \
	  opentelemetry-exporter-otlp-proto-http
	$(PYTHON) -m venv $(BENCH_FF_VENV)
	$(BENCH_FF_VENV)/bin/python -m pip install --quiet functions-framework
	cd bench && ../$(BENCH_VENV)/bin/python middlewares.py
	cd bench && ../$(BENCH_VENV)/bin/python timeout_margin.py
	cd bench && ../$(BENCH_VENV)/bin/python apm.py
	cd bench && ../$(BENCH_VENV)/bin/python gateway.py \
	  --functions-framework ../$(BENCH_FF_VENV)/bin/functions-framework
