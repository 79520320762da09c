"""The scale benchmark of issue #22: spectrum images of 26 M to 2 G X-rays.

Usage::

    python benchmarks/run.py scale [--files 26M,210M,1G,2G] [--tools ours,openreadout,rsciio]
                                   [--limit-gib 20] [--json out.json]

Synthetic 4-detector Velox files (``napari_emd.synthetic.write_velox_si``, written once into
``benchmarks/_cache``, not committed; ``$NAPARI_EMD_BENCH_CACHE`` puts them elsewhere):

====== =========================== ============== =========
name   scan x frames               X-rays / pixel  file
====== =========================== ============== =========
26M    256 x 256 x 10              10             63 MB
210M   512 x 512 x 20              10             480 MB
1G     1024 x 1024 x 20            12.5           2.2 GB
2G     1024 x 1024 x 20            25             4.4 GB
10G    1024 x 1024 x 100           25             22 GB
====== =========================== ============== =========

(X-rays per pixel, frame and detector.) Each tool runs in fresh subprocesses, each under
an address-space limit (``RLIMIT_AS``, ``--limit-gib``) so that a tool that would need more
memory than the machine has fails cleanly and is reported as over the limit:

* ``open``: the lazy open alone (ours: the napari reader path ``read_layers``, no viewer;
  RosettaSciIO: ``file_reader(lazy=True)``; openreadout: ``File`` and its image list);
* ``session``: one process doing what a user does after opening: the first plane (the
  open included: the middle energy plane of the spectrum-image layer's data; for ours,
  "first plane shown" is when the index build's first pass hands that plane over, which
  napari shows as a preview, and "index ready" when every plane is cheap), the next
  plane, one pixel's spectrum (the scan's centre, frames and detectors summed; ours
  through ``napari_emd.spectra.pixel_spectrum``, what the spectrum viewer calls on
  hover), and an element map (Cu K-alpha, 30 channels = 300 eV summed; ours through
  ``napari_emd.spectra.window_map``, what the spectrum viewer's map button calls). Each
  step's time, and the peak RSS growth above the process's RSS after its imports once the
  step is done (so the last is the whole session's);
* ours again: a second ``session`` process with the disk cache the first one filled
  (``reopened``: what napari-emd's per-user cache saves a user who opens the file again).

Each process gets an empty disk cache of its own (``$NAPARI_EMD_CACHE`` set to a fresh
temporary folder) unless ``$NAPARI_EMD_CACHE`` is set, so every measurement is a first
open. Times are wall times of one run (the machine is shared and noisy: compare the tools in
the same run, as ratios).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("NAPARI_EMD_BENCH_CACHE", HERE / "_cache"))
FILES = {  # name: (ny, nx, frames, X-rays per pixel, frame and detector)
    "26M": (256, 256, 10, 10.0),
    "210M": (512, 512, 20, 10.0),
    "1G": (1024, 1024, 20, 12.5),
    "2G": (1024, 1024, 20, 25.0),
    "10G": (1024, 1024, 100, 25.0),
}
TOOLS = ("ours", "openreadout", "rsciio")
# Cu K-alpha (8.048 keV) +- 150 eV, with the synthetic calibration (10 eV, -1000 eV)
MAP_CHANNELS = (890, 920)
STEPS = ("plane", "next", "pixel", "map")


def scale_file(name: str) -> Path:
    """The synthetic file ``name`` of :data:`FILES`, written on first use."""
    ny, nx, nf, counts = FILES[name]
    path = CACHE / f"velox_si_{ny}x{nx}x{nf}_4det_{counts:g}cts_v2.emd"
    if not path.exists():
        from napari_emd.synthetic import write_velox_si

        CACHE.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        info = write_velox_si(tmp, ny=ny, nx=nx, frames=nf, detectors=4,
                              counts_per_pixel=counts, seed=1)
        tmp.rename(path)
        print(f"wrote {path.name}: {info.events / 1e6:.0f} M X-rays, "
              f"{path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    return path


def _rss() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


# --- inside the child ----------------------------------------------------------------


class _Ours:
    def __init__(self) -> None:
        import dask.array as da

        import napari_emd.formats  # noqa: F401  the readers
        from napari_emd.plugin import reader

        da.zeros(1).compute()
        self.reader = reader
        self.layer = self.rec = None
        self.early_at: float | None = None

    def open(self, path: str) -> None:
        from napari_emd.plugin.layer_meta import layer_info

        for data, kw, _ in self.reader.read_layers(path):
            info = layer_info(kw.get("metadata", {}))
            if info is not None and info.is_spectrum_image:
                self.layer, self.rec = data, info.record
                return
        raise RuntimeError("no spectrum-image layer")

    def plane(self, c: int) -> np.ndarray:
        from napari_emd import api

        # what the viewer does (plugin/indexing.py): build the index asking its first
        # pass for plane c, which the viewer shows as soon as that pass ends
        build = api.display_pending(self.rec) if self.early_at is None else None
        if build is not None:
            build(None, (c,), lambda _: setattr(self, "early_at", time.perf_counter()))
        return np.asarray(self.layer[c])

    def pixel(self, y: int, x: int) -> np.ndarray:
        from napari_emd.spectra import pixel_spectrum

        return pixel_spectrum(self.rec, (y, x))

    def map(self, c0: int, c1: int) -> np.ndarray:
        from napari_emd.spectra import window_map

        return np.asarray(window_map(self.rec, c0, c1))


class _RSciIO:
    def __init__(self) -> None:
        import dask.array  # noqa: F401
        import rsciio.emd

        self.mod = rsciio.emd
        self.data = None

    def open(self, path: str) -> None:
        for d in self.mod.file_reader(path, lazy=True):
            if d["data"].ndim == 3 and "energy" in str(d["axes"][-1].get("name")).lower():
                self.data = d["data"]
                return
        raise RuntimeError("no spectrum image")

    def plane(self, c: int) -> np.ndarray:
        return np.asarray(self.data[..., c])

    def pixel(self, y: int, x: int) -> np.ndarray:
        return np.asarray(self.data[y, x, :])

    def map(self, c0: int, c1: int) -> np.ndarray:
        return np.asarray(self.data[..., c0:c1].sum(-1))


class _OpenReadout:
    def __init__(self) -> None:
        import openreadout

        self.mod = openreadout
        self.f = None
        self.si = 0

    def open(self, path: str) -> None:
        self.f = self.mod.File(path)
        self.si = next(i for i, im in enumerate(self.f.images) if im["size_c"] > 1)

    def plane(self, c: int) -> np.ndarray:
        return np.asarray(self.f.read_plane(image=self.si, c=c))

    def pixel(self, y: int, x: int) -> np.ndarray:
        return np.asarray(self.f.get_image_data("C", image=self.si, Y=y, X=x))

    def map(self, c0: int, c1: int) -> np.ndarray:
        return np.sum([self.f.read_plane(image=self.si, c=c) for c in range(c0, c1)], axis=0)


def run_child(tool: str, what: str, path: str, ny: int, nx: int, nch: int) -> dict:
    """One measurement (``open`` or ``session``) of ``tool`` on ``path``."""
    impl = {"ours": _Ours, "rsciio": _RSciIO, "openreadout": _OpenReadout}[tool]()
    gc.collect()
    base = _rss()
    out: dict = {}
    t = time.perf_counter()
    impl.open(path)
    if what == "open":
        out["open"] = time.perf_counter() - t
        out["open_peak"] = _peak() - base
        return out
    mid = nch // 2
    steps = {
        "plane": lambda: impl.plane(mid),
        "next": lambda: impl.plane(mid + 1),
        "pixel": lambda: impl.pixel(ny // 2, nx // 2),
        "map": lambda: impl.map(*MAP_CHANNELS),
    }
    t0 = t
    for name in STEPS:
        if name != "plane":
            t = time.perf_counter()
        got = steps[name]()
        out[name] = time.perf_counter() - t
        if name == "plane" and getattr(impl, "early_at", None) is not None:
            out["preview"] = impl.early_at - t0  # the first plane napari shows
        out[f"{name}_peak"] = _peak() - base
        out[f"{name}_sum"] = float(np.asarray(got, dtype=np.float64).sum())
    return out


# --- the driver ----------------------------------------------------------------------


def _child(tool: str, what: str, path: Path, name: str, limit_gib: float,
           timeout: float, cache: str | None = None) -> dict:
    ny, nx, _, _ = FILES[name]
    code = (
        "import resource, sys, json\n"
        f"lim = int({limit_gib} * 2**30)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (lim, lim))\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import scale\n"
        f"print(json.dumps(scale.run_child({tool!r}, {what!r}, {str(path)!r}, {ny}, {nx}, "
        "4096)))\n"
    )
    env = dict(os.environ)
    scratch = None
    if cache is not None:
        env["NAPARI_EMD_CACHE"] = cache
    elif "NAPARI_EMD_CACHE" not in env:  # every measurement starts with an empty disk cache
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="napari-emd-bench-")
        env["NAPARI_EMD_CACHE"] = scratch.name
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    finally:
        if scratch is not None:
            scratch.cleanup()
    if proc.returncode:
        err = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        text = proc.stderr
        if "MemoryError" in text or "Cannot allocate" in text or "std::bad_alloc" in text \
                or proc.returncode in (-9, 137):
            return {"error": f"over {limit_gib:g} GiB", "detail": err[-1][:200]}
        last = err[-1]
        if "unsupported feature:" in last:  # openreadout's refusal, in its own words
            last = "refuses: " + last.split("unsupported feature:", 1)[1].split("(")[0]
        return {"error": last.strip()[:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _t(res: dict, key: str) -> str:
    if key not in res:
        return "—"
    s = res[key]
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _m(res: dict, key: str) -> str:
    if key not in res:
        return "—"
    return f"{res[key] / 2**30:.2f} GiB" if res[key] >= 2**30 else \
        f"{res[key] / 2**20:.0f} MiB"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="run.py scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="26M,210M,1G,2G", help=f"of {', '.join(FILES)}")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--limit-gib", type=float, default=20.0,
                    help="address-space limit of every measured process")
    ap.add_argument("--timeout", type=float, default=1200.0,
                    help="seconds after which a measurement is given up")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--make-only", action="store_true", help="only write the files")
    args = ap.parse_args(argv)
    names = [n for n in args.files.split(",") if n]
    paths = {n: scale_file(n) for n in names}
    if args.make_only:
        return
    rows = []
    for n in names:
        subprocess.run(["cat", str(paths[n])], stdout=subprocess.DEVNULL, check=True)
        for tool in args.tools.split(","):
            res = _child(tool, "open", paths[n], n, args.limit_gib, args.timeout)
            if "error" not in res and tool == "ours" and "NAPARI_EMD_CACHE" not in os.environ:
                import tempfile

                # the session fills a disk cache of its own; a second session reopens the
                # file with it (what the per-user cache saves a user who opens it again)
                with tempfile.TemporaryDirectory(prefix="napari-emd-bench-") as cache:
                    res.update(_child(tool, "session", paths[n], n, args.limit_gib,
                                      args.timeout, cache))
                    again = _child(tool, "session", paths[n], n, args.limit_gib,
                                   args.timeout, cache)
                res.update({f"re{k}": v for k, v in again.items() if k in STEPS})
            elif "error" not in res:
                res.update(_child(tool, "session", paths[n], n, args.limit_gib, args.timeout))
            rows.append({"file": n, "tool": tool, **res})
            print(n, tool, json.dumps(res), file=sys.stderr, flush=True)
    import platform

    print(f"\n{platform.node()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, limit "
          f"{args.limit_gib:g} GiB of address space per process\n")
    print("| X-rays | tool | open | first plane shown | index ready | next plane | "
          "pixel spectrum | element map | peak RSS growth: open / first plane / all | "
          "reopened: first plane / pixel |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r and "open" not in r:
            print(f"| {r['file']} | {r['tool']} | {r['error']} | | | | | | | |")
            continue
        note = f" ({r['error']})" if "error" in r else ""
        shown = _t(r, "preview") if "preview" in r else _t(r, "plane")
        print(f"| {r['file']} | {r['tool']} | {_t(r, 'open')} | {shown}{note} | "
              f"{_t(r, 'plane')} | {_t(r, 'next')} | {_t(r, 'pixel')} | {_t(r, 'map')} | "
              f"{_m(r, 'open_peak')} / {_m(r, 'plane_peak')} / {_m(r, 'map_peak')} | "
              f"{_t(r, 'replane')} / {_t(r, 'repixel')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
