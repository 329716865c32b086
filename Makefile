# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo dist test lint typecheck unit integration acceptance bench format clean consent-model

$(STAMP): pyproject.toml
	@scripts/bootstrap "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

# `make demo DEMO_PORT=9000` (or DEMO_PORT in the environment) picks the sandbox's port;
# `make demo DEMO_PROVIDER=listmonk` (or brevo) runs it against that provider's sandbox.
demo: $(STAMP)
	$(BIN)/campaign-bridge demo $(if $(DEMO_PORT),--port $(DEMO_PORT)) $(if $(DEMO_PROVIDER),--provider $(DEMO_PROVIDER))

# The wheel docs/deploy.md installs: dist/campaign_bridge-<version>-py3-none-any.whl.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --wheel --outdir dist .

test: $(STAMP)
	@scripts/test

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

acceptance: $(STAMP)
	$(BIN)/pytest tests/acceptance

# The consent model test with the deep budget (random, examples kept in .hypothesis/);
# CI runs the same test with a small derandomized budget. Override the budget with
# CONSENT_MODEL_EXAMPLES / CONSENT_MODEL_STEPS.
consent-model: $(STAMP)
	CONSENT_MODEL_DEEP=1 CONSENT_MODEL_EXAMPLES=$${CONSENT_MODEL_EXAMPLES:-200} \
	CONSENT_MODEL_STEPS=$${CONSENT_MODEL_STEPS:-30} \
	$(BIN)/pytest tests/integration/consent_model/test_consent_model.py -x -q -p no:randomly

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
