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


@pytest.mark.realdata
def test_read_layers_without_a_viewer_imports_no_gui():
    """The plugin's ``read_layers`` without a viewer (layer tuples only: a script, a
    test) imports no napari, Qt or matplotlib: everything it does to a viewer is
    ``plugin.viewer_setup``'s, which runs only when it is given one."""
    from conftest import real_file

    paths = [str(real_file(n)) for n in ("fei_SI_EDS-HAADF-4detectors_2frames.emd",
                                         "fei_example_dpc_titles.emd")]
    code = (
        "from napari_emd.plugin.reader import read_layers\n"
        f"for p in {paths!r}:\n"
        "    assert read_layers(p)\n"
        "import sys\n"
        "assert 'napari' not in sys.modules\n"
    )
    assert _imports_in_fresh_process(code) == []


SRC = ROOT / "src" / "napari_emd"


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_over_700_lines():
    big = {str(p.relative_to(SRC)): n for p in _modules()
           if (n := len(p.read_text("utf-8").splitlines())) > 700}
    assert not big, big


def _resolved_imports(path: Path):
    """(module, name) of every import anywhere in ``path``'s AST, relative imports
    resolved to dotted package paths: ``import x`` gives ``(x, None)``, ``from X import
    name`` gives ``(X, name)``."""
    import ast

    package = list(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                yield mod, alias.name


def _imported_names(path: Path):
    """(module the name comes from, name) of every ``from X import name`` in ``path``."""
    return ((mod, name) for mod, name in _resolved_imports(path) if name is not None)


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


def _module_name(path: Path) -> str:
    """``napari_emd.plugin.reader`` of ``.../napari_emd/plugin/reader.py`` (a package
    by its ``__init__.py``)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path):
    """Every module ``path`` imports, anywhere in its AST (module level, inside
    functions, under ``TYPE_CHECKING``): dotted names, relative imports resolved;
    ``from package import name`` imports ``package.name`` when that is a module of ours
    (``package``, its parent, is implied), else ``package``."""
    for mod, name in _resolved_imports(path):
        if name is None:
            yield mod
            continue
        sub = SRC.parent / (mod.replace(".", "/") + "/" + name)
        is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
        yield f"{mod}.{name}" if is_module else mod


def _import_graph() -> dict[str, set[str]]:
    """napari_emd's modules and the modules of napari_emd each imports. A submodule's
    implicit import of its parent packages is not an edge: a package ``__init__`` that
    imports its own modules is no circle."""
    mods = {_module_name(p): p for p in _modules()}
    return {name: {m for m in _imported_modules(path) if m in mods and m != name}
            for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm,
    iterative): each is an import circle, or several entangled ones."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_circles():
    """The checker itself: a circle through three modules is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circles():
    """No napari_emd module imports, directly or through others, a module that imports
    it back: not at module level, not inside a function. The layers stay layers (the
    library under the plugin, numpy math under the formats) and any module imports on
    its own."""
    graph = _import_graph()
    assert "napari_emd.plugin.launch" in graph["napari_emd.cli"]  # imported in a function
    bad = [" <-> ".join(c) + ": " + "; ".join(
        f"{m} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c) for c in _cycles(graph)]
    assert not bad, bad


#: What only ``napari_emd/plugin/`` may import.
GUI_LIBRARIES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy",
                 "magicgui", "matplotlib")


def test_library_imports_no_gui_anywhere():
    """No module outside ``napari_emd/plugin/`` imports napari, Qt, vispy, magicgui or
    matplotlib anywhere in its source, even inside a function: the library works (and
    is read) without them. The fresh-process tests above check what an import pulls in;
    this one also covers code paths they do not run."""
    plugin = SRC / "plugin"
    bad = [f"{p.relative_to(SRC)}: {m}" for p in _modules() if plugin not in p.parents
           for m in _imported_modules(p) if m.split(".")[0] in GUI_LIBRARIES]
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

    from napari_emd.numba_kernels import BLOB_KERNELS, INDEX_KERNELS, STREAM_KERNELS

    kernel_modules = {k.name for k in (STREAM_KERNELS, BLOB_KERNELS, INDEX_KERNELS)}
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
                 "estimate_frame_shifts", "frame_report",
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
        "load_SI_image_stack", "align_frames", "exclude_frames", "detectors",
    ]
    assert list(inspect.signature(napari_emd.estimate_frame_shifts).parameters)[:3] == [
        "filename", "first_frame", "last_frame"]
    assert list(inspect.signature(napari_emd.file_writer).parameters) == [
        "filename", "signal", "chunks", "kwds"
    ]


def test_typed_contracts_pass_the_type_checker():
    """The records several modules share (the dataset model and its Literal kinds and
    sources, the reader options, the spectrum-image read record, the layer metadata) are
    checked by mypy, so a misspelt kind or source is an error before anything runs."""
    pytest.importorskip("mypy")
    import napari_emd

    src = Path(napari_emd.__file__).resolve().parent
    files = [src / "model.py", src / "options.py", src / "formats" / "velox" / "siread.py",
             src / "plugin" / "layer_meta.py"]
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
         "--no-incremental", *map(str, files)],
        capture_output=True, text=True, cwd=src.parent, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
