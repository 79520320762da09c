#!/usr/bin/env bash
# Install napari-emd with napari and Qt, and open napari on the bundled synthetic sample
# (or on the file given as argument). With no display, napari renders in a private Xvfb
# and a screenshot is saved; its path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
setup_system
setup_venv all
exec .venv/bin/napari-emd view "$@"
