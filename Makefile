# Two entry points for a fresh machine: `make demo` and `make test` (both run `make setup` first).
PY ?= python3.11
# CI's and this sandbox's environment set PYTHONDONTWRITEBYTECODE=1, so each of the ~250 Python processes a
# suite starts (flow runs, workers, servers, CLI calls) compiled the project's modules again (~0.13 CPU s
# each) and each xdist worker rewrote every test module's asserts (collection 5.6 -> 3.5 s with the cache).
# Bytecode goes to __pycache__ (.gitignore); Python writes it atomically, so concurrent processes are safe.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_TOOLS := ffmpeg ffprobe espeak-ng chromium
# chromium: the browser tests (tests/test_web_browser.py) drive Debian's build through Playwright
# subtitles in other scripts (stages/subtitles/languages.py): Tesseract's data (OSD script classifier with
# tesseract-ocr) and the fonts the language corpus renders with (samples/footage_languages.py)
OCR_LANGUAGE_PACKAGES := tesseract-ocr tesseract-ocr-kor tesseract-ocr-rus tesseract-ocr-ukr tesseract-ocr-vie \
	tesseract-ocr-ara tesseract-ocr-hin tesseract-ocr-heb tesseract-ocr-ell tesseract-ocr-tha fonts-noto-core
# defined above APT_PACKAGES: ':=' expands at once, so a later definition left the list without them
APT_PACKAGES := ffmpeg fonts-noto-cjk espeak-ng chromium $(OCR_LANGUAGE_PACKAGES)

.PHONY: setup system-deps demo test test-fast lint bench clean

setup: system-deps $(VENV)/.setup-done

# Installs the media tools through apt-get when we are root; otherwise says exactly what to install.
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing="$$missing fonts-noto-cjk"; \
	for l in osd kor rus ukr vie ara hin heb ell tha; do ls /usr/share/tesseract-ocr/*/tessdata/$$l.traineddata >/dev/null 2>&1 \
	  || missing="$$missing tesseract-ocr-$$l"; done; \
	fc-list 2>/dev/null | grep -qi "Noto Sans Arabic" || missing="$$missing fonts-noto-core"; \
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
	$(BIN)/python -m core.local_server template >/dev/null  # the migrated database a fresh PREFECT_HOME copies
	@touch $@

# Prefect's embedded default: an ephemeral API on SQLite in ~/.prefect, nothing to start.
demo: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING \
	  $(BIN)/python -m flows.subtitles --demo --output-dir demo-output

lint: setup
	$(BIN)/ruff check .

# xdist workers: 3 on CI's and this 2-core host (a third fills the cores while a worker waits on a server or
# a deployed run); `make test TEST_WORKERS=4` to compare
TEST_WORKERS ?= 3

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=30  # a module per worker (tests/conftest.py)

# The edit loop (<= 90 s of pytest on 2 cores): pure stage functions, the pure GPU scheduler, blocks, the
# upload app and structure checks, in process; no Prefect server (marker `server`), no slow end-to-end runs.
FAST_TESTS := tests/test_gpu_scheduler.py tests/test_subtitle_stages.py tests/test_stage_settings.py \
	tests/test_cues.py tests/test_models.py tests/test_lease_index.py tests/test_runtime.py tests/test_transcode.py \
	tests/test_enhance_block.py tests/test_enhance.py tests/test_blocks.py tests/test_block_forms.py \
	tests/test_web_app.py tests/test_ui_surface.py tests/test_structure.py tests/test_prefect_internals.py \
	tests/test_prefect_yaml.py tests/test_media_cache.py tests/test_interrupt.py

test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow and not server" $(FAST_TESTS)

bench: setup
	$(BIN)/python bench/subtitles.py
	$(BIN)/python bench/asr.py

clean:
	rm -rf demo-output .pytest_cache .ruff_cache
