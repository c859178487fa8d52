# The course's commands. Each one installs what it needs first (scripts/setup.sh).
VENV := .venv
PY := $(VENV)/bin/python
# The tests run the CI profile, always against the embedded llama.cpp server, with every
# non-loopback connection refused (COURSE_BLOCK_NETWORK: Python sockets) so no notebook can reach a hub;
# `make test` also runs them in a network namespace with loopback only (scripts/no_network.py), where
# the machine allows one, so no native client (llama.cpp, Chromium) can reach out either.
# Chat answers go to a response cache of their own, emptied before each run, so every test and
# notebook that asks the local server really asks it (a warm cache would hide a broken server).
# Results (leaderboard, stores, adapters) go to build/test-results, so a test run never overwrites
# the learner's results/.
TEST_RESPONSES := build/test-responses.sqlite
TEST_ENV := COURSE_PROFILE=ci COURSE_LLM=local COURSE_BLOCK_NETWORK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 COURSE_RESPONSE_CACHE=$(CURDIR)/$(TEST_RESPONSES) COURSE_RESULTS=$(CURDIR)/build/test-results

.PHONY: setup course test unit notebooks benchmark doctor lab strip wheelhouse

setup:
	bash scripts/setup.sh

## course: execute every notebook offline, print the status table and the leaderboard
course:
	bash scripts/setup.sh
	$(PY) -m course_utils.core.runner --profile offline

## test: unit tests, then every notebook under nbmake in the CI profile
test:
	bash scripts/setup.sh test
	mkdir -p build && rm -f $(TEST_RESPONSES)*
	$(TEST_ENV) $(PY) scripts/no_network.py $(VENV)/bin/pytest -p no:cacheprovider tests notebooks --nbmake --nbmake-timeout=900 --durations=0

unit:
	bash scripts/setup.sh dev
	mkdir -p build && rm -f $(TEST_RESPONSES)*
	$(TEST_ENV) $(VENV)/bin/pytest -p no:cacheprovider tests

benchmark:
	bash scripts/setup.sh
	$(PY) benchmarks/notebook_suite.py

doctor:
	bash scripts/setup.sh
	$(PY) -m course_utils.core.doctor

## wheelhouse: a folder of wheels for installing on workshop seats without network (see the README)
wheelhouse:
	bash scripts/wheelhouse.sh build/wheelhouse

lab:
	bash scripts/setup.sh
	$(VENV)/bin/jupyter lab notebooks

## strip: remove outputs before committing notebooks
strip:
	bash scripts/setup.sh
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
