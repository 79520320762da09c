"""Peak memory and time of the energy-plane path on one big synthetic Velox file: the
first plane (index built, or opened from the disk cache), the next plane, an element map
(an energy window summed), one frame's plane. Each case runs in a fresh process so that
peak RSS growth is its own.

    python benchmarks/scale_probe.py FILE.emd [--write NY NX FRAMES DETECTORS COUNTS]
        [--memory-index]

``--memory-index`` measures the per-process sorted index (uint32 per event) instead of
the disk index, for comparison. The disk cache goes to ``$NAPARI_EMD_CACHE`` (a
temporary folder when unset); it is emptied first so the first run builds the index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
import numpy as np
path, memory_index = sys.argv[1], sys.argv[2] == "1"
from napari_emd import api
from napari_emd.formats.velox.stream import diskindex
if memory_index:
    diskindex.MAX_SEGMENTS = 0
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB
ds = next(d for d in api.read_datasets(path, lazy=True) if d.display is not None)
disp = ds.display
base = rss()
out = {"events_GiB_base": round(base, 3)}
t = time.perf_counter(); disp[900].compute(); out["first plane s"] = time.perf_counter() - t
out["first plane +GiB"] = rss() - base
t = time.perf_counter(); disp[1200].compute(); out["next plane s"] = time.perf_counter() - t
t = time.perf_counter(); disp[780:830].sum(0).compute()
out["map 50 ch s"] = time.perf_counter() - t
out["all +GiB"] = rss() - base
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--write", nargs=5, type=float)
    ap.add_argument("--memory-index", action="store_true")
    a = ap.parse_args()
    if a.write:
        from napari_emd.synthetic import write_velox_si

        ny, nx, frames, dets, counts = a.write
        write_velox_si(a.file, ny=int(ny), nx=int(nx), frames=int(frames),
                       detectors=int(dets), counts_per_pixel=counts, seed=1)
    cache = os.environ.get("NAPARI_EMD_CACHE") or tempfile.mkdtemp(prefix="emd-cache-")
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "NAPARI_EMD_CACHE": cache}
    for run in ("build", "reopen"):
        res = subprocess.run([sys.executable, "-c", CHILD, a.file,
                              "1" if a.memory_index else "0"],
                             capture_output=True, text=True, env=env, check=True)
        print(run, json.dumps(json.loads(res.stdout.strip().splitlines()[-1]), indent=None))
    size = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache)) \
        if os.path.isdir(cache) else 0
    print(f"disk cache: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
