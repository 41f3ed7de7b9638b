# Every target bootstraps what it needs (etcd, a .venv with the package) on a fresh Debian machine.
# `make demo` and `make test` are the two commands the README leads with; CI runs `make test`.

VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint docs pytest bench soak proto bootstrap clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(PY) recipes/rollout.py --crash host-3 $(DEMO_ARGS)

test: lint docs pytest

pytest: bootstrap
	$(PY) -m pytest -q -m "not soak and not bench" $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: bootstrap
	$(VENV)/bin/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html

# bench/transport.py compares the transports with aetcd, which it needs installed (pip install aetcd;
# not a project dependency); kv.py and recipes.py also compare python-etcd3 (pip install etcd3
# "tenacity==6.3.1"). Each script starts its own etcd; see docs/benchmarks.md. The pytest line runs
# benchmarks marked `bench`; it is fine to have none.
bench: bootstrap
	$(PY) bench/transport.py $(BENCH_ARGS)
	$(PY) bench/kv.py $(BENCH_ARGS)
	$(PY) bench/watch.py $(BENCH_ARGS)
	$(PY) bench/sessions.py $(BENCH_ARGS)
	$(PY) bench/recipes.py $(BENCH_ARGS)
	$(PY) -m pytest -q -m bench -p no:randomly $(PYTEST_ARGS) bench || [ $$? -eq 5 ]

soak: bootstrap
	$(PY) -m pytest -q -m soak $(PYTEST_ARGS)

proto: bootstrap
	$(PY) scripts/gen_proto.py

clean:
	rm -rf docs/_build .mypy_cache .ruff_cache
