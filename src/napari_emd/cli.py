"""The ``napari-emd`` command: ``info FILE`` lists datasets, ``view [FILE]`` opens napari,
``cache info|clear`` shows or empties the disk cache, ``--version`` prints the version.

``view`` is :func:`napari_emd.plugin.launch.view` (imported only when asked for: this
module, like the rest of the library, imports no napari or Qt).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import diskcache
from .api import read_datasets, si_facts
from .errors import EMDError
from .model import Dataset, SIFacts
from .units import format_bytes
from .version import __version__


def _axis_text(ds: Dataset) -> str:
    parts = []
    for ax in ds.axes:
        unit = f" {ax.units}" if ax.units else ""
        if ax.vector is not None:
            parts.append(f"{ax.name}[{ax.size}] vector{unit}")
        else:
            parts.append(f"{ax.name}[{ax.size}] {ax.scale:.4g}{unit}")
    return ", ".join(parts)


def info_table(path: str) -> str:
    """A text table of the datasets of ``path`` (opened lazily: no data is read), and
    what the file says about its spectrum image."""
    datasets = read_datasets(path, lazy=True)
    rows = [("path", "title", "kind", "shape", "dtype", "axes (size, scale, units)")]
    for ds in datasets:
        rows.append(
            (ds.path, ds.title, ds.kind, "x".join(map(str, ds.shape)) or "()", str(ds.dtype),
             _axis_text(ds))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[-1]))
    lines.extend(si_lines(si_facts(path)))
    return "\n".join(lines)


def si_lines(facts: SIFacts) -> list[str]:
    """What ``napari-emd info`` says about a spectrum image."""
    if not facts.has_si:
        return []
    out = ["", f"Spectrum image ({facts.signal_type or 'unknown kind'}):"]
    if not facts.readable:
        return [*out, f"  cannot be read: {facts.reason}"]
    px = f", pixel {facts.pixel_size:.4g} {facts.pixel_units}" if facts.pixel_size else ""
    source = facts.grid_source or "the data"
    out.append(f"  scan grid     {facts.ny} x {facts.nx}{px} (from {source})")
    table = " (frame table: a frame range reads only those frames)" if facts.frame_table else ""
    out.append(f"  frames        {facts.n_frames}{table}")
    if facts.detectors:
        out.append(f"  detectors     {len(facts.detectors)}: {', '.join(facts.detectors)}")
    if facts.energy_range:
        lo, hi = facts.energy_range
        per = facts.energy_scale * (1000 if facts.energy_units == "keV" else 1)
        step = f", {per:.4g} eV per channel" if facts.energy_units in ("keV", "eV") else ""
        out.append(f"  channels      {facts.channels}, {lo:.4g} to {hi:.4g} "
                   f"{facts.energy_units}{step}")
    if facts.elements:
        out.append(f"  elements      {', '.join(facts.elements)}")
    if facts.source:
        out.append(f"  read from     {facts.source}")
    for lo, hi in facts.eels_ranges:
        out.append(f"  EELS SI       {lo:.4g} to {hi:.4g} eV")
    return out


def _cache_off_text() -> str:
    value = os.environ.get("NAPARI_EMD_CACHE", "")
    return (f"off (NAPARI_EMD_CACHE={value!r}): indexes are built into temporary files "
            "that go when the file is closed")


def cache_info_text() -> str:
    """What ``napari-emd cache info`` prints: where the disk cache is, how many entries
    and bytes it holds, and its limit (and which environment variable set each)."""
    found = diskcache.info()
    if found.root is None:
        return f"cache    {_cache_off_text()}"
    where = ("set by NAPARI_EMD_CACHE" if os.environ.get("NAPARI_EMD_CACHE")
             else "the user cache folder; NAPARI_EMD_CACHE moves it")
    exists = "" if found.root.is_dir() or not found.writable else ", not created yet"
    state = [] if found.writable else [
        "writes   none: the folder cannot be written (read-only, or not a folder), so "
        "indexes are built into temporary files"]
    limit = ("set by NAPARI_EMD_CACHE_SIZE" if os.environ.get("NAPARI_EMD_CACHE_SIZE")
             else "the default; NAPARI_EMD_CACHE_SIZE changes it")
    used = 100 * found.total_bytes / found.max_bytes if found.max_bytes else 100.0
    share = "<1" if 0 < used < 1 else f"{used:.0f}"
    return "\n".join([
        f"cache    {found.root} ({where}{exists})",
        *state,
        f"entries  {found.entries}",
        f"size     {format_bytes(found.total_bytes)} ({share}% of the limit)",
        f"limit    {format_bytes(found.max_bytes)} ({limit}; the least recently used "
        "entries go first)",
    ])


def cache_clear_text() -> str:
    """Empty the disk cache; what ``napari-emd cache clear`` prints (how many entries
    went, how many bytes were freed)."""
    root = diskcache.cache_root()
    if root is None:
        return f"cache    {_cache_off_text()}; nothing to clear"
    removed, freed = diskcache.clear_counted()
    noun = "entry" if removed == 1 else "entries"
    return f"removed {removed} {noun} ({format_bytes(freed)} freed) from {root}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-emd`` console script."""
    parser = argparse.ArgumentParser(
        prog="napari-emd",
        description="Electron Microscopy Datasets (.emd) from the shell: list what a file "
                    "holds, open it in napari, or show and empty the disk cache.")
    parser.add_argument("--version", action="version", version=f"napari-emd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="list the datasets of an EMD file (no data read)")
    p_info.add_argument("file")
    p_view = sub.add_parser("view", help="open napari with the plugin (sample when no file)")
    p_view.add_argument("file", nargs="?")
    p_view.add_argument("--screenshot", metavar="PNG", help="save a screenshot and exit")
    p_view.add_argument("--no-widgets", action="store_true", help="do not dock the widgets")
    p_view.add_argument("--grid", action=argparse.BooleanOptionalAction, default=None,
                        help="show the layers side by side (--no-grid: overlaid); by "
                             "default several independent images are side by side")
    p_cache = sub.add_parser("cache", help="the disk cache of spectrum-image indexes")
    p_cache.add_argument("action", choices=["info", "clear"],
                         help="info: where it is, entries, size, limit; clear: empty it")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info_table(args.file))
            return 0
        if args.command == "cache":
            print(cache_info_text() if args.action == "info" else cache_clear_text())
            return 0
        from .plugin.launch import view

        return view(args.file, args.screenshot, widgets=not args.no_widgets, grid=args.grid)
    except EMDError as err:
        print(f"napari-emd: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
