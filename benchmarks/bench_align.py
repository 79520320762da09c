"""Drift-corrected (aligned) spectrum images: what aligning costs, side by side with a
plain read and with what a RosettaSciIO user writes today.

Usage::

    python benchmarks/bench_align.py [--sizes small,large] [--repeat 3]

The files are ``benchmarks/run.py``'s (``synthetic(size)``: 256 x 256 x 10 and
512 x 512 x 20 frames, 4 detectors, 4096 channels, in ``benchmarks/_cache``). Every case
runs in a fresh subprocess after ``--settle`` seconds, ``--repeat`` times going round
the cases in turn; the table gives the median and best wall time after imports and the
median peak RSS above the RSS after imports, as in ``run.py``.

The shifts are a steady drift of (0.4, -0.25) pixel per frame (up to 7.6 px down and
4.75 px left over 20 frames), given as an array, so every case moves the same frames the
same way.

Cases
  plain            napari-emd, the summed SI read into memory
  aligned          napari-emd, ``align_frames=shifts``: the same read with every frame's
                   events moved while decoding
  aligned-est      napari-emd, ``align_frames=True``: the shifts measured on the HAADF
                   stack first (phase correlation), then the aligned read
  rsciio-frames    RosettaSciIO ``sum_frames=False`` (every frame's cube in memory at
                   once), then numpy: each frame moved by its whole-pixel shift and summed.
                   Small file only: the large one would need 40 GiB.
  rsciio-loop      RosettaSciIO one frame at a time (``first_frame=f, last_frame=f+1,
                   sum_frames=False``), each moved and added to the sum: the memory-frugal
                   way to do it today (every call decodes the stream up to its frame)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from napari_emd.model import SPECTRUM_IMAGE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    SIZES,
    _fmt_time,
    _imports,
    _peak_mib,
    _rss_mib,
    run_cases,
    summary,
    synthetic,
)

CASES = {
    "ours": ["plain", "aligned", "aligned-est"],
    "rsciio": ["rsciio-frames", "rsciio-loop"],
}
DRIFT_PER_FRAME = (0.4, -0.25)


def drift(frames: int) -> np.ndarray:
    """The (frames, 2) shifts every case applies."""
    return np.arange(frames)[:, None] * np.array(DRIFT_PER_FRAME)[None, :]


def _add_moved(total: np.ndarray, frame: np.ndarray, dy: int, dx: int) -> None:
    """Add the ``(y, x, E)`` frame moved back by a whole-pixel shift to ``total``, in
    place (slices, no copy): the numpy a careful user writes."""
    ny, nx = frame.shape[:2]
    y0, y1, x0, x1 = max(0, -dy), min(ny, ny - dy), max(0, -dx), min(nx, nx - dx)
    total[y0:y1, x0:x1] += frame[y0 + dy : y1 + dy, x0 + dx : x1 + dx]


def _rsciio_eds(out: list[dict]) -> np.ndarray:
    return next(np.asarray(o["data"]) for o in out
                if o["metadata"]["General"]["title"] == "EDS" and o["data"].ndim >= 3)


def run_case(tool: str, case: str, path: str, frames: int) -> dict:
    mod = _imports(tool)
    gc.collect()
    shifts = np.rint(drift(frames)).astype(int)
    base = _rss_mib()
    t = time.perf_counter()
    extra: dict = {}
    if case == "plain":
        si = next(d for d in mod.read_datasets(path) if d.kind == SPECTRUM_IMAGE)
    elif case == "aligned":
        si = next(d for d in mod.read_datasets(path, align_frames=drift(frames))
                  if d.kind == SPECTRUM_IMAGE)
    elif case == "aligned-est":
        si = next(d for d in mod.read_datasets(path, align_frames=True)
                  if d.kind == SPECTRUM_IMAGE)
        extra["estimated_max"] = float(np.abs(
            si.metadata["Signal"]["Frame_alignment"]["estimated_shifts"]).max())
    elif case == "rsciio-frames":
        cube = _rsciio_eds(mod.file_reader(path, sum_frames=False))
        si_data = np.zeros(cube.shape[1:], np.uint16)  # the dtype of a summed read
        for f in range(frames):
            _add_moved(si_data, cube[f], *shifts[f])
        extra["sum"] = int(si_data.sum(dtype=np.int64))
    elif case == "rsciio-loop":
        si_data = None
        for f in range(frames):
            one = _rsciio_eds(mod.file_reader(path, first_frame=f, last_frame=f + 1,
                                              sum_frames=False))[0]
            if si_data is None:
                si_data = np.zeros(one.shape, np.uint16)
            _add_moved(si_data, one, *shifts[f])
            del one
        extra["sum"] = int(si_data.sum(dtype=np.int64))
    else:
        raise ValueError(case)
    if tool == "ours":
        extra["sum"] = int(si.data.sum(dtype=np.int64))
    dt = time.perf_counter() - t
    return {"time": dt, "peak": _peak_mib() - base, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--tools", default="ours,rsciio")
    ap.add_argument("--cases", help="only these cases (comma-separated)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--tool", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.tool, args.case, args.file, args.frames)))
        return
    import importlib.util

    tools = [t for t in args.tools.split(",")
             if t != "rsciio" or importlib.util.find_spec("rsciio") is not None]
    wanted = set(args.cases.split(",")) if args.cases else None
    rows = []
    for size in args.sizes.split(","):
        path = synthetic(size)
        ny, nx, nf = SIZES[size]
        subprocess.run([sys.executable, "-c",
                        f"open({str(path)!r}, 'rb').read(); import napari_emd as m; "
                        f"m.read_datasets({str(path)!r}, first_frame=0, last_frame=1, "
                        "align_frames=[[0, 1]])"],
                       check=True, capture_output=True)
        jobs = [(t, c) for t in tools for c in CASES[t] if wanted is None or c in wanted]
        if size == "large":  # 20 per-frame cubes of 512 MiB would not fit in memory
            jobs = [j for j in jobs if j[1] != "rsciio-frames"]
        runs, errors = run_cases(__file__, jobs, path, nf, args.repeat, args.settle)
        for tool, case in jobs:
            got = runs[(tool, case)]
            row: dict = {"size": f"{ny}x{nx}x{nf}", "tool": tool, "case": case}
            if (tool, case) in errors:
                row["error"] = errors[(tool, case)]
            else:
                row.update(summary(got), sums=sorted({r.get("sum") for r in got}))
            rows.append(row)
            print(row, file=sys.stderr)
    print()
    print(f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| file | case | time (median) | best | peak memory | vs plain |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['size']} | {r['case']} | error: {r['error']} | | | |")
            continue
        plain = next((p for p in rows if p["size"] == r["size"] and p["case"] == "plain"
                      and "time" in p), None)
        ratio = f"{r['time'] / plain['time']:.2f}x" if plain else ""
        print(f"| {r['size']} | {r['case']} | {_fmt_time(r['time'])} | "
              f"{_fmt_time(r['best'])} | {r['peak']:.0f} MiB | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
