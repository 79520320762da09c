"""Package-level promises: the manifest validates, the core has no napari/Qt/oracle import,
the house keeps its plan (module sizes, public names across folders, one owner of the
layer metadata), the code is ruff clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-emd-io")
    assert mf.display_name == "napari-emd"
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-emd-io"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_manifest_commands_import():
    """Every python_name in the manifest resolves to a callable."""
    import importlib

    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    for cmd in pm.get_manifest("napari-emd-io").contributions.commands:
        mod, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(mod), attr)), cmd.python_name


GUI_AND_ORACLES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "rsciio",
                   "ncempy", "hyperspy", "openreadout", "vispy", "magicgui", "matplotlib")


def _imports_in_fresh_process(code: str) -> list[str]:
    code += (
        "\nimport sys, json\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"set({GUI_AND_ORACLES!r}))))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    import json

    return json.loads(res.stdout.strip().splitlines()[-1])


def test_core_imports_no_napari_qt_or_oracles():
    code = ("import napari_emd, napari_emd.formats, napari_emd.formats.velox.stream, "
            "napari_emd.writer, napari_emd.synthetic, napari_emd.spectra, napari_emd.cli")
    assert _imports_in_fresh_process(code) == []


def test_numba_is_imported_on_first_use_only():
    """Importing the package, the Velox decoders and their kernel loader imports no numba:
    only a read that needs a kernel loads it (``numba_kernels``)."""
    code = ("import sys, napari_emd, napari_emd.numba_kernels, napari_emd.formats.velox.stream, "
            "napari_emd.formats.velox.blob.cube\n"
            "print('numba' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


@pytest.mark.realdata
def test_reading_a_velox_spectrum_image_imports_no_gui():
    """``file_reader`` on a Velox SI (eager and lazy, the energy planes computed) imports
    no napari, Qt or matplotlib."""
    from conftest import real_file

    path = str(real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd"))
    code = (
        "import napari_emd\n"
        f"napari_emd.file_reader({path!r})\n"
        f"s = napari_emd.read_datasets({path!r}, lazy=True)\n"
        "[d.display[100].compute() for d in s if d.display is not None]\n"
        f"napari_emd.si_facts({path!r})\n"
    )
    assert _imports_in_fresh_process(code) == []


SRC = ROOT / "src" / "napari_emd"


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_over_700_lines():
    big = {str(p.relative_to(SRC)): n for p in _modules()
           if (n := len(p.read_text("utf-8").splitlines())) > 700}
    assert not big, big


def _imported_names(path: Path):
    """(module the name comes from, name) of every ``from X import name`` in ``path``,
    relative imports resolved to dotted package paths."""
    import ast

    package = list(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                yield mod, alias.name


def test_no_underscore_name_crosses_package_folders():
    """A private name (``_x``, or a module ``_x``) is only imported inside its own package
    folder: what other folders use is public."""
    bad = []
    for path in _modules():
        folder = ".".join(path.relative_to(SRC.parent).parts[:-1])
        for mod, name in _imported_names(path):
            if not mod.startswith("napari_emd"):
                continue
            target = mod if not (SRC.parent / (mod.replace(".", "/") + "/" + name + ".py")
                                 ).exists() else f"{mod}.{name}"
            target_folder = target if (SRC.parent / target.replace(".", "/")).is_dir() \
                else target.rsplit(".", 1)[0]
            private = (name.startswith("_") and not name.startswith("__")) or any(
                p.startswith("_") and not p.startswith("__") for p in mod.split("."))
            if private and target_folder != folder:
                bad.append(f"{path.relative_to(SRC)}: from {mod} import {name}")
    assert not bad, bad


def test_layer_metadata_has_one_owner():
    """Only ``plugin/layer_meta.py`` spells napari-emd's layer-metadata keys: the drift
    of old (``emd_part`` written in one module, read under another key elsewhere) cannot
    come back."""
    import re

    owner = SRC / "plugin" / "layer_meta.py"
    pattern = re.compile(r"""\[\s*["']emd["']\s*\]|\.get\(\s*["']emd["']"""
                         r"""|["']emd_(part|spectra|derived|tables)["']""")
    bad = [f"{p.relative_to(SRC)}:{i + 1}" for p in _modules() if p != owner
           for i, line in enumerate(p.read_text("utf-8").splitlines()) if pattern.search(line)]
    assert not bad, bad


def test_page_handling_is_the_eager_decoders_alone():
    """The output's page handling (``stream/pages.py``: ``new_output``, ``fault_ahead``,
    over ``libc.small_pages``) is called from the eager decoder only: nothing in the
    Velox reader or elsewhere hands it anything."""
    import re

    allowed = {SRC / "formats" / "velox" / "stream" / "eager.py",
               SRC / "formats" / "velox" / "stream" / "pages.py",
               SRC / "formats" / "velox" / "stream" / "kernels.py",  # the toucher
               SRC / "libc.py"}
    pattern = re.compile(r"\b(small_pages|fault_ahead|new_output|touch_pages)\b"
                         r"|\bstream\.pages\b|from \.pages\b")
    bad = [f"{p.relative_to(SRC)}:{i + 1}" for p in _modules() if p not in allowed
           for i, line in enumerate(p.read_text("utf-8").splitlines())
           if pattern.search(line) and not line.lstrip().startswith(("#", '"'))]
    assert not bad, bad


def _definitions(path: Path):
    """(kind, name) of what ``path`` defines and builds: ``def``/``class``/assigned names
    (``define``), calls of a name (``call``) and exact string constants (``string``)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield "define", node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    yield "define", target.id
        elif isinstance(node, ast.Call):
            func = node.func
            yield "call", func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield "string", node.value


# Shared infrastructure and keys: (kind, name) -> the one module that may have it.
ONE_OWNER = {
    ("define", "DATA_CHUNK_BYTES"): "h5.py",
    ("define", "grow_chunks"): "h5.py",
    ("define", "warn_overflow"): "formats/velox/stream/spec.py",
    ("define", "n_threads"): "threads.py",
    ("call", "ThreadPoolExecutor"): "threads.py",
    ("define", "KernelModule"): "numba_kernels.py",
    ("string", "napari_layer"): "model.py",
    ("define", "NAPARI_LAYER_ATTR"): "model.py",
    ("define", "ANNOTATION_TYPES"): "model.py",
}


def test_shared_pieces_have_one_owner():
    """Each piece of shared infrastructure (the lazy chunk budget and block rule, the
    overflow warning, the worker pool and its size, the numba kernel loader) and each
    shared key is defined, built or spelled in exactly one module: a second copy that
    drifts from the first cannot come back."""
    found: dict[tuple[str, str], set[str]] = {key: set() for key in ONE_OWNER}
    for path in _modules():
        for item in _definitions(path):
            if item in found:
                found[item].add(str(path.relative_to(SRC).as_posix()))
    bad = {f"{kind} {name}": sorted(where) for (kind, name), where in found.items()
           if where != {ONE_OWNER[kind, name]}}
    assert not bad, bad


def test_numba_only_in_the_kernel_modules():
    """numba is imported only by the kernel modules, and those are loaded only through
    ``numba_kernels`` (on first use): nothing imports them directly."""
    import ast

    from napari_emd.numba_kernels import BLOB_KERNELS, STREAM_KERNELS

    kernel_modules = {k.name for k in (STREAM_KERNELS, BLOB_KERNELS)}
    bad = []
    for path in _modules():
        dotted = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] == "numba" for n in names) and dotted not in kernel_modules:
                bad.append(f"{path.relative_to(SRC)} imports numba")
        for mod, name in _imported_names(path):
            if f"{mod}.{name}" in kernel_modules or mod in kernel_modules:
                bad.append(f"{path.relative_to(SRC)}: from {mod} import {name}")
    assert not bad, bad


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    res = subprocess.run(
        [ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_public_api():
    import napari_emd

    for name in ("file_reader", "file_writer", "read_datasets", "detect_format", "si_facts",
                 "estimate_frame_shifts",
                 "EMDError", "EMDWarning", "Dataset", "Axis", "SIFacts", "IMAGE", "IMAGE_STACK",
                 "SPECTRUM", "SPECTRUM_IMAGE", "SIGNAL", "TABLE", "KINDS"):
        assert hasattr(napari_emd, name), name
    assert set(napari_emd.KINDS) == {napari_emd.IMAGE, napari_emd.IMAGE_STACK,
                                     napari_emd.SPECTRUM, napari_emd.SPECTRUM_IMAGE,
                                     napari_emd.SIGNAL, napari_emd.TABLE}
    import inspect

    params = list(inspect.signature(napari_emd.file_reader).parameters)
    assert params == [
        "filename", "lazy", "dataset_path", "stack_group", "select_type", "first_frame",
        "last_frame", "sum_frames", "sum_EDS_detectors", "rebin_energy", "SI_dtype",
        "load_SI_image_stack", "align_frames", "exclude_frames",
    ]
    assert list(inspect.signature(napari_emd.estimate_frame_shifts).parameters)[:3] == [
        "filename", "first_frame", "last_frame"]
    assert list(inspect.signature(napari_emd.file_writer).parameters) == [
        "filename", "signal", "chunks", "kwds"
    ]
