# The two commands: `make run` and `make test`. Everything they need is installed on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$(PATH)
# registry/version.py is the one place the version is written.
VERSION := $(shell sed -n 's/^VERSION = "\(.*\)"/\1/p' registry/version.py)
IMAGE := ghcr.io/zot-operator/zot-operator:$(VERSION)

.PHONY: run test test-unit test-kind tools lint fmt generate image image-local version bench clean

# PYTHONWARNINGS: setuptools notes on every editable install that folders named like the packages would
# shadow them; here the packages live in registry/ and operator/, named otherwise, so the note only adds noise.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

# The example ZotCluster as local processes on 127.0.0.1-3 (local mode, docs/local-mode.md); Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/zot-operator local up -f examples/zotcluster.yaml

tools:
	bash hack/tools.sh

# mypy must see the packages under their installed names (zot_registry is registry/): through the
# editable install's import hook it does not, and would take every cross-package import as Any.
MYPY_PATH := $(VENV)/mypy-path
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(MYPY_PATH) && ln -sfn ../../registry $(MYPY_PATH)/zot_registry && ln -sfn ../../operator $(MYPY_PATH)/zot_operator
	MYPYPATH=$(MYPY_PATH) $(BIN)/mypy -p zot_registry -p zot_operator
	MYPYPATH=$(MYPY_PATH) $(BIN)/mypy tests bench

# Everything generated from operator/models.py: the CRD, its reference, the chart's CRD copies and the
# schema of its zotCluster.spec value. Tests fail when any of them is stale.
generate: $(STAMP)
	$(BIN)/zot-operator crd > crds/zotclusters.yaml
	$(BIN)/python -m zot_operator.reference > docs/zotcluster-reference.md
	$(BIN)/python -m zot_operator.chart_schema

# Rewrites the tree: ruff's safe fixes (import order, ...) and ruff's formatting, which `make lint` checks.
fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# -rs prints why a test was skipped (the kind suite, where Docker or kind is missing); --durations the slowest.
# Test modules run on TEST_WORKERS processes, each module whole on one of them (its module-scoped
# clusters and peers stay its own), in the order tests/conftest.py gives: the longest first.
# (--no-loadscope-reorder: xdist would otherwise hand out the modules with the most tests first,
# and leave the one-test story of minutes for last, with the other worker idle.)
TEST_WORKERS ?= 2
test: $(STAMP) tools lint
	$(BIN)/pytest -q -rs --durations=20 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Seconds, no test peers: the pure-Python tests (config, hashing, rendering, plans).
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The image both programs run from (Dockerfile); needs Docker.
image:
	docker build -t $(IMAGE) .

# The same image without Docker (debootstrap + buildah, as root): .tools/images/zot-operator-$(VERSION).tar,
# an OCI archive named $(IMAGE). `make test` builds it too (hack/tools.sh, group image).
image-local:
	bash hack/tools.sh image

version:
	@echo $(VERSION)

# The end-to-end suite on kind: needs Docker and kind (fails, rather than skips, without them).
test-kind: $(STAMP)
	bash hack/tools.sh go
	ZOT_E2E_KIND=1 $(BIN)/pytest -q -rs tests/e2e_kind

# Side by side with distribution, the proxy's cost, and the operator at scale: tables and plots in docs/.
bench: $(STAMP) tools
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.peers
	$(BIN)/python -m bench.proxy
	$(BIN)/python -m bench.operator_scale
	$(BIN)/python -m bench.s3
	$(BIN)/python -m bench.rebalance
	$(BIN)/python -m bench.ldap_logins

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
