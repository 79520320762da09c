"""Spectrum-image benchmarks: napari-emd side by side with RosettaSciIO and openreadout.

Usage::

    python benchmarks/run.py [--sizes small,large] [--tools ours,raw,rsciio,openreadout]
    python benchmarks/run.py scale [--files 26M,210M,1G,2G]   (see benchmarks/scale.py)

Synthetic 4-detector Velox files (``napari_emd.synthetic.write_velox_si``) are generated once
into ``benchmarks/_cache`` (not committed): ``small`` = 256 x 256 x 10 frames, ``large`` =
512 x 512 x 20 frames, 2 X-rays per pixel, frame and detector. Every case runs in its own
fresh subprocess (``--repeat`` times, going round all cases in turn; median and best
reported); the table gives the wall time after imports (and a ``gc.collect()`` of what
the imports left) and the peak resident memory above what the process held after its
imports (``ru_maxrss`` minus the RSS after imports). Tools that are not installed are
skipped.

Cases
  eager      the summed spectrum image, read into memory
  *-cold     the same, paying numba's once-per-process start-up inside the timing (the
             other ours cases load the kernels with the imports, as the raw case does)
  lazy-open  open lazily (what napari does before it draws anything)
  plane      the first energy plane drawn (napari starts at the middle plane)
  next       the next energy plane, right after
  frame      one frame (the middle one) as a per-frame SI, eager first/last_frame
  frame-warm the same after reading another frame in the same process: what a session
             that reads frame after frame pays (each read still gets fresh memory for
             its output from the kernel)
  one-det    one detector's spectrum image (of four), eager: ours with
             ``detectors=[first]`` reads only that stream; RosettaSciIO has no such option
             and decodes every detector apart (``sum_EDS_detectors=False``) to give it
  all-det    every detector's spectrum image apart, eager (``sum_EDS_detectors=False``):
             what a read of one detector cost before ``detectors=`` (ours)
  one-det-plane  the first energy plane of one detector's lazy SI (ours)
  raw        baseline: h5py-read every stream + one numba scatter pass into the cube
  alloc      floor: allocate the summed cube with numpy and write every page (no
             decoding at all); on this VM the cost of those page faults depends on
             whether the host still backs the huge pages (see docs/spectrum-images.md)

Every case waits ``--settle`` seconds (3 by default) before it starts, so that each
starts from the memory state of an idle machine. The cases run in a fixed order, and on
a VM that hands freed memory back to its host (after ~2 s) a case that follows a
memory-hungry one would otherwise get that memory's cheap huge pages and the others not:
RosettaSciIO's frame follows its own 1 GiB lazy open, and took 0.6-1.5 s depending on
it. ``--settle 0`` runs the cases back to back.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numba
import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "_cache"
SIZES = {"small": (256, 256, 10), "large": (512, 512, 20)}
CASES = {
    "ours": ["eager", "eager-cold", "lazy-open", "plane", "next", "plane-cold", "next-cold",
             "frame", "frame-warm", "one-det", "all-det", "one-det-plane"],
    "raw": ["raw", "alloc"],
    "rsciio": ["eager", "lazy-open", "frame", "frame-warm", "one-det"],
    "openreadout": ["lazy-open", "plane", "next"],
}


def synthetic(size: str, counts: float = 2.0) -> Path:
    ny, nx, nf = SIZES[size]
    suffix = "" if counts == 2.0 else f"_{counts:g}cts"
    path = CACHE / f"velox_si_{ny}x{nx}x{nf}_4det{suffix}.emd"
    if not path.exists():
        from napari_emd.synthetic import write_velox_si

        CACHE.mkdir(exist_ok=True)
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        write_velox_si(tmp, ny=ny, nx=nx, frames=nf, detectors=4, counts_per_pixel=counts,
                       seed=1)
        tmp.rename(path)
        print(f"wrote {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the cases (run inside the subprocess) -------------------------------------------


def _imports(tool: str, case: str = ""):
    if tool == "ours":
        import dask.array as da

        import napari_emd
        import napari_emd.formats  # the readers, imported on first use otherwise
        from napari_emd.formats.velox.stream import warm_kernels

        da.zeros(1).compute()  # dask's own first-compute imports
        if not case.endswith("-cold"):
            # numba's once-per-process start-up (loading the cached kernels), like the raw
            # baseline's; the "-cold" cases pay it inside the timing
            warm_kernels()
        return napari_emd
    if tool == "raw":
        # compile (or load from numba's cache) outside the timing, like the others
        _raw_scatter(np.zeros(1, np.uint16), 1, 1, np.zeros((1, 1), np.uint16))
        return None
    if tool == "rsciio":
        import dask.array  # noqa: F401
        import rsciio.emd

        return rsciio.emd
    if tool == "openreadout":
        import openreadout

        return openreadout
    raise ValueError(tool)


def _ours_si(mod, path: str, **kw):
    for ds in mod.read_datasets(path, **kw):
        if ds.kind == "spectrum_image" and ds.title.startswith("EDS"):
            return ds
    raise RuntimeError("no EDS spectrum image")


@numba.njit(nogil=True, cache=True)
def _raw_scatter(stream, npix, limit, out):  # pragma: no cover - compiled
    pix = 0
    for v in stream:
        if v == 65535:
            pix += 1
        elif pix < limit:
            out[pix % npix, v] += 1


def _raw(path: str, frames: int) -> object:
    """The floor: read each stream whole with h5py, then one single-threaded numba pass."""
    with h5py.File(path, "r") as f:
        group = f["Data/SpectrumStream"]
        first = next(iter(group.values()))
        settings = json.loads(first["AcquisitionSettings"][0])
        nch = int(settings["bincount"])
        img = next(iter(f["Data/Image"].values()))["Data"]
        ny, nx = img.shape[:2]
        out = np.zeros((ny * nx, nch), np.uint16)
        for g in group.values():
            stream = g["Data"][()].ravel()
            _raw_scatter(stream, ny * nx, ny * nx * frames, out)
    return out


def run_case(tool: str, case: str, path: str, frames: int) -> dict:
    mod = _imports(tool, case)
    # The imports leave ~100-160 k objects waiting for the cyclic GC; whichever read comes
    # next would trigger the full collection they are due (40-70 ms here) by chance of
    # its first allocations. Collect them now, for every tool alike: the timing then
    # holds only the collections the read's own allocations cause.
    gc.collect()
    case = case.removesuffix("-cold")
    base = _rss_mib()
    t = time.perf_counter()
    extra: dict = {}
    mid = None
    if tool == "ours":
        if case == "eager":
            _ours_si(mod, path)
        elif case == "lazy-open":
            mod.read_datasets(path, lazy=True)
        elif case in ("plane", "next"):
            ds = _ours_si(mod, path, lazy=True)
            mid = ds.display.shape[0] // 2
            plane = ds.display[mid].compute()
            if case == "next":
                t = time.perf_counter()
                plane = ds.display[mid + 1].compute()
            extra["sum"] = int(plane.sum())
        elif case in ("frame", "frame-warm"):
            k = frames // 2
            if case == "frame-warm":
                _ours_si(mod, path, first_frame=0, last_frame=1, sum_frames=False)
                base = _rss_mib()
                t = time.perf_counter()
            _ours_si(mod, path, first_frame=k, last_frame=k + 1, sum_frames=False)
        elif case == "one-det":
            _ours_si(mod, path, detectors=[0])
        elif case == "all-det":
            mod.read_datasets(path, sum_EDS_detectors=False)
        elif case == "one-det-plane":
            ds = _ours_si(mod, path, lazy=True, detectors=[0])
            mid = ds.display.shape[0] // 2
            extra["sum"] = int(ds.display[mid].compute().sum())
    elif tool == "raw":
        if case == "raw":
            _raw(path, frames)
        else:
            with h5py.File(path, "r") as f:
                ny, nx = next(iter(f["Data/Image"].values()))["Data"].shape[:2]
            np.zeros((ny, nx, 4096), np.uint16).fill(0)
    elif tool == "rsciio":
        if case == "eager":
            mod.file_reader(path)
        elif case == "lazy-open":
            mod.file_reader(path, lazy=True)
        elif case in ("frame", "frame-warm"):
            k = frames // 2
            if case == "frame-warm":
                mod.file_reader(path, first_frame=0, last_frame=1, sum_frames=False)
                base = _rss_mib()
                t = time.perf_counter()
            mod.file_reader(path, first_frame=k, last_frame=k + 1, sum_frames=False)
        elif case == "one-det":
            mod.file_reader(path, sum_EDS_detectors=False)  # every detector apart
    elif tool == "openreadout":
        with mod.File(path) as f:
            images = f.images
            si = next(i for i, im in enumerate(images) if im["size_c"] > 1)
            if case in ("plane", "next"):
                mid = images[si]["size_c"] // 2
                plane = f.read_plane(image=si, c=mid)
                if case == "next":
                    t = time.perf_counter()
                    plane = f.read_plane(image=si, c=mid + 1)
                extra["sum"] = int(plane.sum())
    dt = time.perf_counter() - t
    return {"time": dt, "peak": _peak_mib() - base, "rss_after_imports": base, **extra}


# --- driver ----------------------------------------------------------------------------


def _available(tool: str) -> bool:
    mod = {"rsciio": "rsciio", "openreadout": "openreadout"}.get(tool)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def _fmt_time(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def run_cases(
    script: str, jobs: list[tuple[str, str]], path: Path, nf: int, repeat: int,
    settle: float,
) -> tuple[dict[tuple[str, str], list[dict]], dict[tuple[str, str], str]]:
    """Run every (tool, case) of ``jobs`` ``repeat`` times, each in a fresh process of
    ``script`` after ``settle`` seconds: the results per job, and the last error line of
    the jobs that failed (they are not run again). The repeats go round all cases in
    turn, so that every tool meets the same spells of slow memory on a shared VM instead
    of one tool getting all of them."""
    runs: dict[tuple[str, str], list[dict]] = {j: [] for j in jobs}
    errors: dict[tuple[str, str], str] = {}
    for _ in range(max(1, repeat)):
        for tool, case in jobs:
            if (tool, case) in errors:
                continue
            if settle > 0:
                time.sleep(settle)
            cmd = [sys.executable, script, "--tool", tool, "--case", case,
                   "--file", str(path), "--frames", str(nf)]
            # no per-user disk cache: every run is a first open, as before there was one
            env = {"NAPARI_EMD_CACHE": "off", **os.environ}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                errors[(tool, case)] = (proc.stderr.strip().splitlines()
                                        or [f"exit status {proc.returncode}"])[-1]
                continue
            runs[(tool, case)].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs, errors


def summary(got: list[dict]) -> dict:
    """Median and best time, median peak memory and every time of one job's runs."""
    return {
        "time": float(np.median([r["time"] for r in got])),
        "best": float(np.min([r["time"] for r in got])),
        "peak": float(np.median([r["peak"] for r in got])),
        "times": [r["time"] for r in got],
    }


def main() -> None:
    if sys.argv[1:2] == ["scale"]:  # the scale benchmark of #22 (benchmarks/scale.py)
        import scale

        scale.main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--tools", default="ours,raw,rsciio,openreadout")
    ap.add_argument("--cases", help="only these cases (comma-separated), e.g. frame,frame-warm")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--tool", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per case (fresh process each); the median is reported")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait before every case, so that each starts with "
                    "the memory state of an idle machine (on a VM that hands freed memory "
                    "back to its host after ~2 s, a case that runs right after a "
                    "memory-hungry one otherwise gets its cheap huge pages); 0: none")
    ap.add_argument("--counts", type=float, default=2.0,
                    help="X-rays per pixel, frame and detector (10 gives the 26 M events "
                    "of the 256 x 256 x 10 file the issue measured)")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.tool, args.case, args.file, args.frames)))
        return
    tools = [t for t in args.tools.split(",") if t]
    rows = []
    for size in args.sizes.split(","):
        path = synthetic(size, args.counts)
        ny, nx, nf = SIZES[size]
        # warm the page cache and numba's on-disk cache so no case pays for them
        subprocess.run([sys.executable, "-c",
                        f"open({str(path)!r}, 'rb').read(); import napari_emd as m; "
                        f"m.read_datasets({str(path)!r}, first_frame=0, last_frame=1)"],
                       check=True, capture_output=True)
        jobs = []
        wanted = set(args.cases.split(",")) if args.cases else None
        for tool in tools:
            if not _available(tool):
                print(f"{tool} is not installed: skipped", file=sys.stderr)
                continue
            jobs += [(tool, c) for c in CASES[tool] if wanted is None or c in wanted]
        runs, errors = run_cases(__file__, jobs, path, nf, args.repeat, args.settle)
        for tool, case in jobs:
            got = runs[(tool, case)]
            if (tool, case) in errors:
                res: dict = {"error": errors[(tool, case)]}
            else:
                res = summary(got)
            row = {"size": f"{ny}x{nx}x{nf}", "tool": tool, "case": case, **res}
            rows.append(row)
            if "error" in res:
                print(f"{row['size']:>12} {tool:>12} {case:>10}  ERROR {res['error']}",
                      file=sys.stderr)
            else:
                print(f"{row['size']:>12} {tool:>12} {case:>10} "
                      f"{_fmt_time(res['time']):>10} {_fmt_time(res['best']):>10} "
                      f"{res['peak']:8.0f} MiB", file=sys.stderr)
    print()
    print(f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| file | tool | case | time (median) | best | peak memory |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['size']} | {r['tool']} | {r['case']} | error | | |")
        else:
            print(f"| {r['size']} | {r['tool']} | {r['case']} | {_fmt_time(r['time'])} | "
                  f"{_fmt_time(r['best'])} | {r['peak']:.0f} MiB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
