#!/usr/bin/env bash
# Install everything the tests need and run the whole suite (extra args go to pytest).
# napari tests run in a real window under Xvfb (pytest-xvfb starts it) with Mesa's
# software OpenGL; the real EMD files are read from ../shared/emd-data or
# $NAPARI_EMD_TEST_DATA, and the tests that need them skip with a reason when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
setup_system
setup_venv testing
exec .venv/bin/python -m pytest "$@"
