"""The spectrum-image loader's options, without Qt: the choices the form offers, the
``file_reader`` keyword arguments its values make, the memory they need, and the text
that describes a file's facts. :mod:`.loader` is the form that uses them."""

from __future__ import annotations

import os
from typing import Any

from ...model import SIFacts

DTYPES = ("native", "uint8", "uint16", "uint32", "float32", "float64")
SELECT_TYPES = {"everything": None, "images": "image", "spectrum images": "spectrum_image",
                "single spectra": "single_spectrum"}
# Rebinning leaves at least this many channels.
MIN_CHANNELS = 16
# Warn before an in-memory load that would take more than this share of the free memory.
MEMORY_SHARE = 0.8
FILE_FILTER = "EMD files (*.emd *.EMD *.h5 *.hdf5 *.de5)"
PRUNED_TIP = ("Velox 'pruned' this file: it dropped the per-detector event streams and kept "
              "only its own spectrum-image cube, summed over all frames and detectors. The "
              "spectrum image is read from that cube, so frame and detector choices do not "
              "apply.")
FRAME_TABLE_TIP = ("The file records where each frame starts (a FrameLocationTable): a "
                   "frame range reads only those frames.")


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now, or ``None`` when unknown
    (Linux ``MemAvailable``, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (ValueError, OSError, AttributeError):
        pass
    return None


def facts_text(facts: SIFacts, listing: list[str]) -> str:
    """The facts of a file as a few lines of rich text for the form."""
    name = os.path.basename(facts.path)
    lines = [f"<b>{name}</b> ({facts.format or 'not an EMD file'})"]
    if facts.has_si and not facts.readable:
        lines.append(f"Spectrum image cannot be read: {facts.reason}")
    elif facts.has_si:
        px = f", pixel {facts.pixel_size:.4g} {facts.pixel_units}" if facts.pixel_size else ""
        lines.append(f"Scan {facts.ny} × {facts.nx}{px}")
        frames = f"Frames: {facts.n_frames}"
        if facts.frame_table:
            frames += " (each frame can be read alone)"
        lines.append(frames)
        if facts.detectors:
            lines.append(f"Detectors ({len(facts.detectors)}): {', '.join(facts.detectors)}")
        if facts.energy_range:
            lo, hi = facts.energy_range
            lines.append(f"{facts.channels} channels, {lo:.4g} – {hi:.4g} "
                         f"{facts.energy_units}")
        if facts.elements:
            lines.append(f"Elements: {', '.join(facts.elements)}")
        if facts.source and facts.source != "event streams":
            lines.append(f"Read from the {facts.source}"
                         + (f": {facts.reason}" if facts.reason else ""))
    else:
        lines.append("No spectrum image: the spectrum-image options do not apply.")
    lines += [f"• {d}" for d in listing[:12]]
    if len(listing) > 12:
        lines.append(f"• … and {len(listing) - 12} more")
    return "<br>".join(lines)


def reader_options(facts: SIFacts, values: dict[str, Any]) -> dict[str, Any]:
    """``file_reader`` keyword arguments from the form's values (Velox frame numbers
    1…N inclusive become RosettaSciIO's 0-based, end-exclusive range)."""
    opts: dict[str, Any] = {"lazy": bool(values["lazy"]),
                            "select_type": SELECT_TYPES[values["select_type"]]}
    if not (facts.has_si and facts.readable):
        return opts
    first, last = int(values["first_frame"]), int(values["last_frame"])
    if not 1 <= first <= last <= facts.n_frames:
        raise ValueError(f"frames {first} to {last} are not inside 1 to {facts.n_frames}")
    streams = facts.source == "event streams"
    if streams:
        opts.update(first_frame=first - 1, last_frame=None if last == facts.n_frames else last,
                    sum_frames=bool(values["sum_frames"]),
                    sum_EDS_detectors=bool(values["sum_EDS_detectors"]))
    opts.update(rebin_energy=int(values["rebin_energy"]),
                load_SI_image_stack=bool(values["load_SI_image_stack"]))
    if streams:
        excluded = tuple(sorted(int(v) - 1 for v in values.get("exclude_frames") or ()))
        if excluded:
            opts["exclude_frames"] = excluded
        if values.get("align_frames"):
            opts["align_frames"] = True
        chosen = chosen_detectors(facts, values)
        if chosen != list(facts.detectors):
            opts["detectors"] = chosen
    if values["SI_dtype"] != "native":
        opts["SI_dtype"] = values["SI_dtype"]
    return opts


def chosen_detectors(facts: SIFacts, values: dict[str, Any]) -> list[str]:
    """The detectors chosen in the form, in the file's order (all of them when the form
    does not say); raises ``ValueError`` when the file has detectors and none is chosen."""
    if len(facts.detectors) < 2 or values.get("detectors") is None:
        return list(facts.detectors)
    chosen = {str(d) for d in values["detectors"]}
    picked = [d for d in facts.detectors if d in chosen]
    if not picked:
        raise ValueError("choose at least one detector")
    return picked


def needed_bytes(facts: SIFacts, values: dict[str, Any]) -> int:
    """Memory the chosen spectrum image(s) take when computed: one cube when the chosen
    detectors are summed, one per chosen detector otherwise."""
    if not (facts.has_si and facts.readable):
        return 0
    opts = reader_options(facts, values)
    if opts.get("sum_EDS_detectors", True):
        detectors = 1
    else:
        detectors = max(1, len(opts.get("detectors") or facts.detectors))
    one = facts.nbytes(0, 1, True, detectors, opts.get("rebin_energy", 1), opts.get("SI_dtype"))
    if opts.get("sum_frames", True):
        return one
    first = opts.get("first_frame", 0)
    last = facts.n_frames if opts.get("last_frame") is None else opts["last_frame"]
    kept = [f for f in range(first, last) if f not in opts.get("exclude_frames", ())]
    return one * max(len(kept), 1)


def asks_for_si(facts: SIFacts, options: dict[str, Any]) -> bool:
    """Whether a load with these reader options should make a spectrum image: the file
    has one and ``select_type`` does not leave spectrum images out."""
    return facts.has_si and options.get("select_type") in (None, "spectrum_image")
