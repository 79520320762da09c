# Shared set-up for scripts/demo.sh and scripts/test.sh (sourced, not run).
# Installs what a fresh Debian/Ubuntu machine lacks: Xvfb, Mesa's software OpenGL and the
# X11 libraries Qt needs (through apt, only when missing), then the package into .venv (or
# another venv, with pinned versions: scripts/test.sh's oldest-versions run).

SYSTEM_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0"

setup_system() {
  command -v dpkg-query >/dev/null 2>&1 || return 0   # not Debian: bring your own Xvfb/GL
  local missing=()
  for p in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_venv() {  # $1: the extra (all | test | testing); $2: venv dir (.venv); $3: constraints
  # $3, a pip constraints file (ci/oldest.txt: pkg==floor pins), installs those versions
  # into the venv, up- or downgrading what an earlier run left there.
  local extra="$1" venv="${2:-.venv}" constraints="${3:-}"
  local py="${PYTHON:-python3}" log="$venv-install.log"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  echo "Installing napari-emd[$extra] into $venv${constraints:+ pinned by $constraints} (log: $log)"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -e ".[$extra]" ${constraints:+-c "$constraints"}
       } >"$log" 2>&1; then
    grep -v "is ignored" "$log" | tail -30 >&2
    echo "pip install failed; see $log" >&2
    return 1
  fi
}

versions() {  # $1: venv dir; prints the versions the tests run against, on one line
  "$1/bin/python" - <<'PY'
from importlib.metadata import PackageNotFoundError, version
import sys
out = [f"python {sys.version.split()[0]}"]
for name in ("napari", "npe2", "magicgui", "numpy", "dask", "h5py", "numba", "platformdirs",
             "matplotlib", "PyQt6"):
    try:
        out.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        out.append(f"{name} -")
print(", ".join(out))
PY
}
