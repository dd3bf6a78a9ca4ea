# Two entry points (see README): `make demo` runs the reconciler on the bundled example against
# local real API servers; `make test` runs linters, type checks and the whole test suite.
# Everything either needs is installed by these targets (Python venv, kube-apiserver/etcd build).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv assets istio-assets lint test demo bench clean

$(BIN)/reconciler: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/reconciler

# Builds kube-apiserver + etcd from the Go module proxy once; cached in ~/.cache/mesh-reconciler.
# Outside CI a machine without Go still runs the unit tests (integration tests skip with a message).
assets:
	@tools/build-k8s-assets.sh >/dev/null || { \
	  if [ "$$CI" = "true" ]; then echo "error: cannot build kube-apiserver/etcd (CI needs them)" >&2; exit 1; fi; \
	  echo "warning: kube-apiserver/etcd not available; integration tests will be skipped" >&2; }

# Builds a real istiod (pilot-discovery) + the test-only SDS stand-in from the Go module proxy once;
# cached in ~/.cache/mesh-reconciler/istio (first build ~10-25 min on 2 cores). Without it the
# real-istiod tests skip locally and fail under CI=true.
istio-assets:
	@tools/build-istio-assets.sh >/dev/null || { \
	  if [ "$$CI" = "true" ]; then echo "error: cannot build istiod (CI needs it)" >&2; exit 1; fi; \
	  echo "warning: istiod not available; the real-istiod tests will be skipped" >&2; }

lint: venv
	$(BIN)/ruff check reconciler tests tools benchmarks
	$(BIN)/ruff format --check reconciler tests tools benchmarks
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: venv assets istio-assets lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv assets
	$(BIN)/python tools/demo.py $(DEMO_ARGS)

# Side-by-side benchmark on 3 local clusters: reconciler vs kubectl vs the bare API calls (not in
# `make test`; a few minutes). E.g. `make bench BENCH_K=1000 BENCH_ARGS="--repeat 3 --json bench.json"`.
BENCH_K ?= 100
bench: venv assets
	$(BIN)/pip install -q -e '.[dev,bench]'
	@# Bytecode as the image has it (pip compiles on install): with PYTHONDONTWRITEBYTECODE set, an
	@# editable checkout would otherwise recompile every edited module in every measured run.
	$(BIN)/python -m compileall -q reconciler
	$(BIN)/python benchmarks/bench_clusters.py --k $(BENCH_K) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
