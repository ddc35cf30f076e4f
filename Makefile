# The two commands: `make run` starts the assistant, `make test` runs every test.
# Other targets: install, validate, train, seed, clean, nlu-report, bench, run-scaled, migrate.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.10 || echo python3.10)
VENV := .venv
BIN := $(VENV)/bin
DATA_FILES := $(shell find data -name '*.yml' 2>/dev/null)
MODEL := models/shop.tar.gz
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: run test install install-test validate train seed clean nlu-report bench test-production

run: install $(MODEL)
	@scripts/run.sh

test: install-test
	@scripts/test.sh

# The production profile's scale-out, fault and soak tests on their own (`make test` ends with them): two
# Rasa replicas and two action servers on the local PostgreSQL, Redis and RabbitMQ.
test-production: install-test $(MODEL)
	$(BIN)/pytest tests/production

install: $(VENV)/.installed web/node_modules/.installed

install-test: install $(VENV)/.installed-test

$(VENV)/.installed: requirements.txt constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null || { \
	  echo "Rasa 3.6 needs Python 3.10: install it (see README, 'Requirements') or run 'make PYTHON=/path/to/python3.10'."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt -c constraints.txt
	@touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

validate: install
	$(BIN)/rasa data validate --fail-on-warnings

# Rasa is retrained only when the config, the domain or the training data changed.
$(MODEL): config.yml domain.yml $(DATA_FILES) | install
	$(BIN)/rasa train --fixed-model-name shop --out models

train: $(MODEL)

# Scores the trained model on the held-out examples in tests/nlu/ (never used for training) and
# writes results/nlu/summary.md: intent macro-F1, entity F1, per-intent F1 and confusion pairs.
nlu-report: $(MODEL)
	rm -rf results/nlu
	$(BIN)/rasa test nlu --model $(MODEL) --nlu tests/nlu --out results/nlu
	$(BIN)/python scripts/nlu_report.py results/nlu

# Latency, throughput and memory against Rasa's template bot, and 50 concurrent shoppers on the
# 100,000-product catalog; prints a table, writes results/bench/bench.json and bench.png.
bench: install $(MODEL)
	$(BIN)/python -m bench

seed: install
	$(BIN)/python -m shop seed --if-empty

# Production-profile extras (README, "Production profile"): two Rasa replicas and two action servers
# behind local round-robin balancers; the shop schema's migrations.
.PHONY: run-scaled migrate

run-scaled: install $(MODEL)
	@scripts/run_scaled.sh

migrate: install
	$(BIN)/python -m shop migrate

clean:
	rm -rf models results var .rasa
