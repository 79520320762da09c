#!/usr/bin/env bash
# Install everything the tests need and run the suite twice (extra args go to pytest, both
# runs):
#   newest  .venv         the newest releases of everything, with the test oracles
#                         (RosettaSciIO, ncempy, ...) and checkers: the whole suite;
#   oldest  .venv-oldest  napari, npe2, magicgui, numpy, dask, h5py, numba, platformdirs
#                         and matplotlib pinned at the floors pyproject.toml claims
#                         (ci/oldest.txt): the whole suite again; the tests that need an
#                         oracle skip there (the oracles need newer libraries than our
#                         floors).
# `--newest` or `--oldest` as the first argument runs only that one. Both runs print their
# versions and pytest's summary line, repeated at the end; the exit code is non-zero when
# either run fails.
# napari tests run in a real window under Xvfb (pytest-xvfb starts it) with Mesa's
# software OpenGL; the real EMD files are read from ../shared/emd-data or
# $NAPARI_EMD_TEST_DATA, and the tests that need them skip with a reason when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh

runs="newest oldest"
case "${1:-}" in
  --newest) runs=newest; shift ;;
  --oldest) runs=oldest; shift ;;
esac
setup_system

summary=()
status=0
for run in $runs; do
  if [ "$run" = newest ]; then
    venv=.venv
    setup_venv testing "$venv"
    unset NAPARI_EMD_EXPECT_FLOORS
  else
    venv=.venv-oldest
    setup_venv test "$venv" ci/oldest.txt
    export NAPARI_EMD_EXPECT_FLOORS=1  # tests/test_versions.py checks the pins took
  fi
  line="$(versions "$venv")"
  echo "== $run: $line"
  log="$venv-pytest.log"
  set +e
  "$venv/bin/python" -m pytest "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  result="$(grep -E "^=*.* in [0-9.]+s" "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')"
  if [ "$rc" -eq 5 ]; then
    result="no tests ran (pytest exit 5): nothing was selected"
  fi
  summary+=("$run [$line]: ${result:-no summary line} (exit $rc)")
  [ "$rc" -eq 0 ] || status=1
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
