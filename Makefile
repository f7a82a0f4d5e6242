# The two commands: `make run` (the product on its embedded default) and `make test`.
# Both install what they need on first use: a Python virtualenv in .venv/ from the
# pinned lock file, and the npm pieces (anvil, solc, OpenZeppelin, oidc-provider,
# playwright-core); `make test` also installs Debian's chromium when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_PY := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP_NPM := node_modules/.installed-$(shell cat package-lock.json | sha256sum | cut -c1-16)

.PHONY: run test lint install chromium lock clean

# OVPP_ENVIRONMENT has no default: `make run` is the one place that says development.
run: install
	OVPP_ENVIRONMENT=development $(BIN)/ovpp-wallet serve

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

install: $(STAMP_PY) $(STAMP_NPM)

$(STAMP_PY): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Python dependencies into $(VENV) (first run takes ~30 s)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

$(STAMP_NPM): package-lock.json
	@echo "==> installing npm pieces into node_modules/ (anvil, solc, OpenZeppelin, oidc-provider, playwright-core)"
	@# not `npm ci`: npm leaves other platforms' optional anvil binaries out of the lock, and ci refuses it
	npm install --no-audit --no-fund --no-save --loglevel=error
	@rm -f node_modules/.installed-*
	@touch $@

# The browser tests (tests/api/test_web_app.py) drive Debian's chromium with npm playwright-core
# (Playwright's own browser downloads are not used). CI runs as root; elsewhere install it once.
chromium:
	@test -x /usr/bin/chromium || { \
		echo "==> installing chromium (apt-get) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	}

# Re-pin the lock file from pyproject.toml (maintainers only).
lock:
	rm -rf /tmp/ovpp-lock-venv && $(PYTHON) -m venv /tmp/ovpp-lock-venv
	/tmp/ovpp-lock-venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' setuptools==80.9.0
	/tmp/ovpp-lock-venv/bin/pip freeze --all --exclude-editable | grep -v -E "^(pip|wheel)==" > requirements.lock

clean:
	rm -rf $(VENV) node_modules var test-artifacts
