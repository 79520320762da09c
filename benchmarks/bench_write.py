"""Peak memory and speed of writing a big lazy (dask) array to NCEM EMD.

The array is a synthetic spectrum image (y, x, energy) uint16 made lazily block by block
(like a lazily decoded Velox SI), so nothing but the writer decides how much of it is in
memory. The script reports the peak resident memory (RSS) of the process above the
baseline measured just before writing, next to the size of the data; a writer that
materialised the array would show a peak at least the size of the data.

    python benchmarks/bench_write.py                   # 2 GiB SI
    python benchmarks/bench_write.py --gib 8           # bigger than most laptops' RAM share
    python benchmarks/bench_write.py --velox FILE.emd  # the largest SI of a real Velox file
    python benchmarks/bench_write.py --rsciio --gib 0.5  # RosettaSciIO's writer, same data

Each variant runs in a fresh process (peak RSS is per process). Output files go to a
temporary folder (``--out`` to choose one) and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time


def _rss_mib() -> float:
    """Current resident memory in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler:
    """Samples RSS every few milliseconds in a thread: the peak during one operation
    (``ru_maxrss`` would include everything before it)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = _rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def synthetic_si(gib: float, energy: int = 1024, rows_per_block: int = 32):
    """A lazy (y, x, energy) uint16 spectrum image of about ``gib`` GiB, square in y/x,
    computed block by block (each block a few tens of MiB)."""
    import dask.array as da
    import numpy as np

    side = max(rows_per_block, int((gib * 2**30 / (2 * energy)) ** 0.5))
    side -= side % rows_per_block

    def block(block_info=None):
        info = block_info[None]
        (y0, y1), (x0, x1), (e0, e1) = info["array-location"]
        rng = np.random.default_rng(y0 * 7919 + x0)
        # drawn straight as uint16: the generator itself must not need big temporaries
        return rng.integers(0, 8, size=(y1 - y0, x1 - x0, e1 - e0), dtype=np.uint16)

    chunks = ((rows_per_block,) * (side // rows_per_block), (side,), (energy,))
    return da.map_blocks(block, chunks=chunks, dtype=np.uint16, meta=np.empty((0, 0, 0),
                                                                              np.uint16))


def _signal(data, title: str = "EDS SI") -> dict:
    axes = [
        {"name": "y", "units": "nm", "index_in_array": 0, "size": data.shape[0],
         "scale": 1.5, "offset": 0.0, "navigate": True},
        {"name": "x", "units": "nm", "index_in_array": 1, "size": data.shape[1],
         "scale": 1.5, "offset": 0.0, "navigate": True},
        {"name": "Energy", "units": "keV", "index_in_array": 2, "size": data.shape[2],
         "scale": 0.01, "offset": 0.0, "navigate": False},
    ]
    return {"data": data, "axes": axes,
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": "EDS_TEM"}},
            "original_metadata": {}}


def run_one(variant: str, gib: float, out: str, velox: str | None) -> dict:
    """One measurement in this process."""
    import numpy as np

    import napari_emd

    if velox:
        signals = napari_emd.file_reader(velox, lazy=True)
        sig = max(signals, key=lambda s: int(np.prod(s["data"].shape)))
        source = f"{os.path.basename(velox)}: {sig['metadata']['General']['title']}"
    else:
        sig = _signal(synthetic_si(gib))
        source = "synthetic SI"
    data = sig["data"]
    nbytes = int(np.prod(data.shape)) * data.dtype.itemsize
    path = os.path.join(out, f"bench_{variant}.emd")
    base = _rss_mib()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        if variant == "napari-emd":
            napari_emd.file_writer(path, sig)
        elif variant == "rsciio":
            from rsciio.emd import file_writer as rs_writer

            rs_writer(path, sig)
        else:
            raise ValueError(variant)
    dt = time.perf_counter() - t0
    size = os.path.getsize(path)
    os.remove(path)
    return {
        "writer": variant,
        "source": source,
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "data_MiB": round(nbytes / 2**20, 1),
        "file_MiB": round(size / 2**20, 1),
        "seconds": round(dt, 2),
        "MiB_per_s": round(nbytes / 2**20 / dt, 1),
        "baseline_RSS_MiB": round(base, 1),
        "peak_RSS_above_baseline_MiB": round(sampler.peak - base, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0, help="size of the synthetic SI")
    ap.add_argument("--velox", help="write the largest dataset of this Velox file, lazily")
    ap.add_argument("--rsciio", action="store_true", help="also run RosettaSciIO's writer")
    ap.add_argument("--out", help="folder for the output files (default: a temp folder)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant here
    args = ap.parse_args()

    if args.one:
        print(json.dumps(run_one(args.one, args.gib, args.out, args.velox)))
        return

    variants = ["napari-emd"] + (["rsciio"] if args.rsciio else [])
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for v in variants:
            cmd = [sys.executable, __file__, "--one", v, "--gib", str(args.gib), "--out", tmp]
            if args.velox:
                cmd += ["--velox", args.velox]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"{v}: failed\n{res.stderr[-2000:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{r['writer']:>10}: {r['source']} {r['shape']} {r['dtype']} "
                  f"{r['data_MiB']} MiB in {r['seconds']} s ({r['MiB_per_s']} MiB/s), "
                  f"peak RSS +{r['peak_RSS_above_baseline_MiB']} MiB "
                  f"(baseline {r['baseline_RSS_MiB']} MiB)")


if __name__ == "__main__":
    main()
