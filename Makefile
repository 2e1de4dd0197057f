# Two entry points for a fresh machine: `make demo` and `make test` (both run `make setup` first).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_TOOLS := ffmpeg ffprobe espeak-ng chromium
# chromium: the browser tests (tests/test_web_browser.py) drive Debian's build through Playwright
APT_PACKAGES := ffmpeg fonts-noto-cjk espeak-ng chromium

.PHONY: setup system-deps demo test lint bench clean

setup: system-deps $(VENV)/.setup-done

# Installs the media tools through apt-get when we are root; otherwise says exactly what to install.
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages: $(APT_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing:$$missing -- run: sudo apt-get install -y $(APT_PACKAGES)"; exit 1; \
	  fi; \
	fi

$(VENV)/.setup-done: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,ray,diarize]"  # ray: tests/test_ray_runner.py; diarize: speakers
	@touch $@

# Prefect's embedded default: an ephemeral API on SQLite in ~/.prefect, nothing to start.
demo: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING \
	  $(BIN)/python -m flows.subtitles --demo --output-dir demo-output

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/subtitles.py
	$(BIN)/python bench/asr.py

clean:
	rm -rf demo-output .pytest_cache .ruff_cache
