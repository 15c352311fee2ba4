# Everything installs itself into .venv on first use: a fresh clone needs only python3 (3.11+) and git.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
REPO ?=
ARGS ?=

.PHONY: install install-compat run demo up test unit integration e2e faults compat bench eval lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# llama-cpp-python builds llama.cpp from source once (pip caches the wheel); only what the server needs.
install-compat: install
	CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF" $(PY) -m pip install --quiet -e '.[dev,compat]'

run: install  ## make run REPO=/path/to/repo [ARGS="--categories security"]
	@test -n "$(REPO)" || (echo "usage: make run REPO=/path/to/a/git/repo" >&2; exit 2)
	$(VENV)/bin/repo-pilot run "$(REPO)" $(ARGS)
	@echo 'more commands (status, runs, events, servers stop): . $(VENV)/bin/activate, then repo-pilot --help' >&2

demo: install
	$(VENV)/bin/repo-pilot demo

up: install
	$(VENV)/bin/repo-pilot up

test: install
	$(PYTEST) -n 2 tests

unit: install
	$(PYTEST) -m unit tests

integration: install
	$(PYTEST) -n 2 -m integration tests

e2e: install
	$(PYTEST) -m e2e tests

faults: install  ## the fault suite at full size (50 runs, a 100 s Postgres outage…); see docs/reliability.md
	REPO_PILOT_FAULTS=full REPO_PILOT_FAULTS_REPORT=$(CURDIR)/faults-report.jsonl $(PYTEST) -m faults -s --timeout 3600 tests/faults

compat: install-compat  ## the llm engine against a real llama.cpp server (tests/e2e/test_llama_cpp_server.py)
	$(PYTEST) tests/e2e/test_llama_cpp_server.py

bench: install  ## make bench [ARGS="--full" | ARGS="--only pipeline,relay"]; see benchmarks/README.md
	$(PY) -m benchmarks $(ARGS)

CORPUS ?=
OUT ?= eval.json
eval: install  ## make eval CORPUS=DIR [OUT=eval.json]: the offline main job on every repository in DIR
	@test -n "$(CORPUS)" || (echo "usage: make eval CORPUS=/dir/of/repos-or-bundles [OUT=eval.json]" >&2; exit 2)
	$(PY) -m shared.app.evaluate $(CORPUS) --out $(OUT)

# Modules kept in `ruff format` style; the rest of the tree predates the formatter and joins this
# list as it is formatted (a whole-tree reformat would collide with work in progress).
FORMATTED := shared/adapters/project_tools.py shared/adapters/target_deps.py shared/policy/checks_gate.py shared/engines/rules/__init__.py shared/engines/rules/analyze.py \
	shared/engines/rules/change_plan.py shared/engines/rules/change_tests.py shared/engines/rules/codemods.py \
	shared/engines/rules/engine.py shared/engines/rules/implement.py shared/engines/rules/lint.py \
	shared/engines/rules/project.py shared/engines/rules/sites.py shared/engines/rules/suggest.py \
	shared/engines/rules/smoke.py shared/adapters/project_checks.py shared/adapters/target_env.py \
	shared/adapters/codemods.py shared/adapters/analyzers.py shared/adapters/own_tests.py \
	shared/policy/behaviour.py shared/policy/review.py shared/policy/findings.py shared/app/evaluate.py

lint: install
	$(PY) -m ruff check shared services tests benchmarks
	$(PY) -m ruff format --check $(FORMATTED)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry shared services

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
