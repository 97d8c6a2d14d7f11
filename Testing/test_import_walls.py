"""The import walls of README's Architecture section, checked by parsing every .py file.

Every ``import`` and ``from ... import`` is found with :mod:`ast` at any depth (module level,
inside functions, under ``if``/``try``), relative imports are resolved against the file's
package, and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name count
too. The walls:

1. ``MedPrepLib`` (the engine) never imports slicer, vtk, qt, ctk or any part of the Slicer
   module (``MedPrep``, ``MedPrepCore``, ``MedPrepGui``, ``MedPrepSelfTest``) — directly or
   through another file of the checkout.
2. ``MedPrepCore`` is Qt-free: nothing it reaches (transitively, through the checkout) imports
   qt, ctk, PythonQt or a ``slicer`` submodule that the ``slicer-core`` wheel does not ship
   (``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n`` ...);
   it uses no ``slicer.util`` function that needs the application (dialogs, ``loadUI``,
   ``setSliceViewerLayers`` ...), and it takes the scene explicitly (no ``slicer.app``,
   ``slicer.mrmlScene``, ``slicer.modules``). The self-test cases (``MedPrepSelfTest``) are held
   to the same wall, so they import under slicer-core.
3. Data flows one way — sources -> volume -> recipe steps -> writers: ``MedPrepLib.dicom`` does
   not import ``MedPrepLib.recipe`` or ``MedPrepLib.cli``; ``MedPrepLib.recipe`` does not import
   ``MedPrepLib.cli`` or ``MedPrepLib.dicom``; nothing in ``MedPrepLib`` but ``__main__.py`` and
   ``cli/`` itself imports ``MedPrepLib.cli``; the volume layer (errors, geometry, volume,
   progress) imports neither sources nor steps nor the command line. On the Slicer side the core
   does not import the panel, the module file or the self-tests.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Top-level packages of the checkout and where they live: the engine at the root, the Slicer
# module's packages in MedPrep/ (Slicer puts that folder on sys.path).
ROOTS = {"MedPrepLib": REPO, "MedPrep": REPO / "MedPrep"}

QT = {"qt", "ctk", "PythonQt", "qSlicerBaseQTCorePythonQt", "qSlicerBaseQTGUIPythonQt"}
SLICER_MODULE_PACKAGES = {"MedPrep", "MedPrepCore", "MedPrepGui", "MedPrepSelfTest"}

# What the slicer-core wheel's ``slicer`` package holds: MRML/VTK classes as attributes of
# ``slicer`` and the ``slicer.util`` module. Any other ``slicer.X`` needs the application.
SLICER_CORE_SUBMODULES = {"slicer", "slicer.util"}

# slicer.util functions whose body needs qt or the running application (slicer-core ships them,
# but they fail without Slicer). Kept current by test_gui_util_list_covers_slicer_core.
SLICER_UTIL_GUI = {
    "clickAndDrag", "confirmOkCancelDisplay", "confirmRetryCloseDisplay", "confirmYesNoDisplay",
    "createProgressDialog", "delayDisplay", "displayPythonShell", "errorDisplay", "findChild",
    "findChildren", "forceRenderAllViews", "infoDisplay", "loadUI", "longPath", "lookupTopLevelWidget",
    "mainWindow", "messageBox", "moduleSelector", "reloadScriptedModule", "resetSliceViews",
    "resetThreeDViews", "setApplicationLogoVisible", "setDataProbeVisible", "setErrorLogVisible",
    "setMenuBarsVisible", "setModuleHelpSectionVisible", "setModulePanelTitleVisible",
    "setPythonConsoleVisible", "setSliceViewerLayers", "setStatusBarVisible", "setToolbarsVisible",
    "setViewControllersVisible", "settingsValue", "showStatusMessage", "startQtDesigner",
    "startupEnvironment", "tempDirectory", "tryWithErrorDisplay", "childWidgetVariables", "warningDisplay",
    "MessageDialog", "WaitCursor", "RenderBlocker", "getModuleGui", "getModuleWidget",
    "getNewModuleGui", "getNewModuleWidget", "selectModule", "selectedModule", "pythonShell",
}  # fmt: skip
APPLICATION_ATTRIBUTES = {"app", "mrmlScene", "modules", "moduleNames", "dicomDatabase"}


@dataclass(frozen=True)
class Import:
    """One imported name: ``module`` (absolute, dotted) as written or resolved, at ``line``."""

    module: str
    line: int
    names: tuple[str, ...] = ()  # the names of a ``from module import a, b``


def module_name(path: Path) -> str:
    """The dotted name a file is imported under (``MedPrepLib.dicom.scan``, ``MedPrepCore.VolumeNodes``)."""
    rel = path.relative_to(REPO / "MedPrep") if path.is_relative_to(REPO / "MedPrep") else path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(level: int, module: str | None, importer: str, is_package: bool) -> str:
    """The absolute module of ``from <level dots><module> import ...`` in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        if level - 1 > len(base):
            raise ValueError(f"relative import beyond the top-level package in {importer}")
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, importer: str, is_package: bool = False) -> list[Import]:
    """Every module ``source`` imports, at any depth, as absolute dotted names.

    ``from a.b import c`` gives ``a.b`` (names ``("c",)``) and also ``a.b.c``, since ``c`` may
    be a submodule; the checks judge both (an attribute never matches a module rule).
    """
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.level, node.module, importer, is_package)
            names = tuple(alias.name for alias in node.names)
            found.append(Import(base, node.lineno, names))
            found += [Import(f"{base}.{name}" if base else name, node.lineno) for name in names if name != "*"]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
        ):
            found.append(Import(node.args[0].value, node.lineno))
    return found


def attribute_uses(source: str) -> list[tuple[str, int]]:
    """Dotted attribute chains rooted at a name, e.g. ``("slicer.util.loadUI", 12)``."""
    uses = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            text = ast.unparse(node)
            if text.replace(".", "").replace("_", "").isalnum():
                uses.append((text, node.lineno))
    return uses


def python_files() -> dict[str, Path]:
    """{module name: file} of the engine and the Slicer module (tests and benchmarks excluded)."""
    files = {}
    for path in sorted((REPO / "MedPrepLib").rglob("*.py")) + sorted((REPO / "MedPrep").rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[module_name(path)] = path
    return files


FILES = python_files()
IMPORTS = {
    name: imports_of(path.read_text(), name, path.name == "__init__.py") for name, path in FILES.items()
}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def local_module(module: str) -> str | None:
    """The checkout file's module name that ``module`` refers to, or None for outside code."""
    while module:
        if module in FILES:
            return module
        module = module.rpartition(".")[0]
    return None


def reached(start: str) -> dict[str, list[str]]:
    """{module: import chain from ``start``} for every checkout module ``start`` reaches."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in IMPORTS[current]:
            target = local_module(imported.module)
            if target and target not in chains:
                chains[target] = chains[current] + [target]
                todo.append(target)
    return chains


def violations(importers, forbidden, *, transitive: bool = False) -> list[str]:
    """'file:line imports X' for each import of a module matching ``forbidden(module)``."""
    out = []
    for importer in sorted(n for n in FILES if importers(n)):
        chains = reached(importer) if transitive else {importer: [importer]}
        for module, chain in chains.items():
            for imported in IMPORTS[module]:
                if forbidden(imported.module):
                    via = f" (via {' -> '.join(chain)})" if len(chain) > 1 else ""
                    path = FILES[module].relative_to(REPO)
                    out.append(f"{path}:{imported.line} imports {imported.module}{via}")
    return sorted(set(out))


# --- the parser itself --------------------------------------------------------------------------


def test_parser_finds_imports_at_any_depth_and_resolves_relative_ones():
    source = textwrap.dedent(
        """
        import os, numpy as np
        from . import volume
        from .errors import MedPrepError
        from ..cli import main

        def later():
            import qt
            from ...x import y
            try:
                from slicer.util import loadUI
            except ImportError:
                pass

        class C:
            def m(self):
                importlib.import_module("ctk")
        """
    )
    modules = {i.module for i in imports_of(source.replace("...x", ".."), "MedPrepLib.dicom.scan")}
    assert {"os", "numpy", "MedPrepLib.dicom.volume", "MedPrepLib.dicom.errors"} <= modules
    assert {"MedPrepLib.cli", "MedPrepLib.cli.main", "qt", "slicer.util", "slicer.util.loadUI", "ctk"} <= modules
    # in a package's __init__.py, "." is the package itself
    assert {i.module for i in imports_of("from .scan import scan", "MedPrepLib.dicom", True)} >= {"MedPrepLib.dicom.scan"}
    with pytest.raises(ValueError, match="beyond"):
        imports_of("from .... import x", "MedPrepLib.dicom.scan")


def test_the_tree_is_seen():
    """Guard against vacuous walls: the files and imports the rules speak of are found."""
    assert {"MedPrepLib", "MedPrepLib.geometry", "MedPrepLib.dicom.scan", "MedPrepLib.recipe", "MedPrepLib.cli"} <= set(
        FILES
    )
    assert {"MedPrep", "MedPrepCore", "MedPrepCore.VolumeNodes", "MedPrepGui", "MedPrepSelfTest"} <= set(FILES)
    assert any(i.module == "MedPrepLib.cli" for i in IMPORTS["MedPrepLib.__main__"])
    assert any(within(i.module, "MedPrepLib.dicom") for i in IMPORTS["MedPrepCore.DicomImport"])
    # the panel needs the application, so the Qt-free check would flag it
    assert any(_needs_the_application(i.module) for name in FILES if within(name, "MedPrepGui") for i in IMPORTS[name])
    assert "MedPrepLib.errors" in reached("MedPrepCore.Processing")


def test_a_broken_wall_is_reported():
    """The checker reports a forbidden import deep inside a function, through a relative import."""
    saved = dict(IMPORTS)
    try:
        IMPORTS["MedPrepLib.geometry"] = IMPORTS["MedPrepLib.geometry"] + imports_of(
            "def f():\n    from .cli import main\n    import vtk\n", "MedPrepLib.geometry"
        )
        found = violations(lambda n: n == "MedPrepLib.volume", lambda m: m == "vtk" or within(m, "MedPrepLib.cli"),
                           transitive=True)  # fmt: skip
        assert any("geometry.py:2 imports MedPrepLib.cli (via MedPrepLib.volume -> MedPrepLib.geometry)" in v for v in found)
        assert any("geometry.py:3 imports vtk" in v for v in found)
    finally:
        IMPORTS.clear()
        IMPORTS.update(saved)


# --- wall 1: the engine knows nothing of Slicer -----------------------------------------------------


def test_medpreplib_never_imports_slicer_vtk_qt_or_the_module():
    forbidden = {"slicer", "vtk", "vtkmodules", "mrml"} | QT | SLICER_MODULE_PACKAGES
    found = violations(lambda n: within(n, "MedPrepLib"), lambda m: m.split(".")[0] in forbidden, transitive=True)
    assert not found, "MedPrepLib must run without Slicer:\n" + "\n".join(found)


# --- wall 2: the Slicer module's core is Qt-free ----------------------------------------------------


def _needs_the_application(module: str) -> bool:
    top = module.split(".")[0]
    if top in QT:
        return True
    if top != "slicer":
        return False
    if module in SLICER_CORE_SUBMODULES:
        return False
    parent, _, leaf = module.rpartition(".")
    if parent == "slicer":  # `from slicer import vtkMRMLScalarVolumeNode` names a class, not a module
        return not leaf.startswith("vtk")
    if parent == "slicer.util":
        return leaf in SLICER_UTIL_GUI
    return True


def _qt_free(name: str) -> bool:
    return within(name, "MedPrepCore") or within(name, "MedPrepSelfTest")


def test_medprepcore_and_the_self_test_cases_are_qt_free():
    found = violations(_qt_free, _needs_the_application, transitive=True)
    assert not found, "MedPrepCore and MedPrepSelfTest must import under slicer-core:\n" + "\n".join(found)


def test_medprepcore_uses_no_application_functions_and_takes_the_scene_explicitly():
    found = []
    for name, path in FILES.items():
        if not within(name, "MedPrepCore"):
            continue
        for text, line in attribute_uses(path.read_text()):
            parts = text.split(".")
            if parts[:2] == ["slicer", "util"] and len(parts) > 2 and parts[2] in SLICER_UTIL_GUI:
                found.append(f"{path.relative_to(REPO)}:{line} uses {text}")
            elif parts[0] == "slicer" and len(parts) > 1 and parts[1] in APPLICATION_ATTRIBUTES:
                found.append(f"{path.relative_to(REPO)}:{line} uses {text} (take the scene/node as an argument)")
    assert not found, "\n".join(found)


def test_self_test_cases_use_no_application_dialogs():
    """The cases report through delayDisplay of their runner, not through slicer.util dialogs."""
    found = [
        f"{path.relative_to(REPO)}:{line} uses {text}"
        for name, path in FILES.items()
        if within(name, "MedPrepSelfTest")
        for text, line in attribute_uses(path.read_text())
        if text.startswith("slicer.util.") and text.split(".")[2] in SLICER_UTIL_GUI
    ]
    assert not found, "\n".join(found)


def test_gui_util_list_covers_slicer_core():
    """Every slicer.util function of the installed slicer-core whose body needs qt or the app is listed."""
    util = pytest.importorskip("slicer.util", reason="needs the slicer-core wheel")
    source = Path(util.__file__).read_text()
    needs_app = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            body = ast.get_source_segment(source, node) or ""
            if any(k in body for k in ("qt.", "ctk.", "slicer.app", "mainWindow(", "import qt")):
                needs_app.add(node.name)
    assert needs_app, "the scan found nothing: slicer.util changed shape"
    assert needs_app - SLICER_UTIL_GUI == set()


# --- wall 3: one-way flow -------------------------------------------------------------------------


FLOW_RULES = [
    # (who, must not import, why)
    ("MedPrepLib.dicom", "MedPrepLib.recipe", "sources come before recipe steps"),
    ("MedPrepLib.dicom", "MedPrepLib.cli", "the command line sits on top"),
    ("MedPrepLib.recipe", "MedPrepLib.cli", "the command line sits on top"),
    ("MedPrepLib.recipe", "MedPrepLib.dicom", "steps take volumes, whatever their source"),
]
VOLUME_LAYER = ("MedPrepLib.errors", "MedPrepLib.geometry", "MedPrepLib.volume", "MedPrepLib.progress")


@pytest.mark.parametrize(("importer", "target", "why"), FLOW_RULES)
def test_no_module_reaches_back_up_the_flow(importer, target, why):
    found = violations(lambda n: within(n, importer), lambda m: within(m, target))
    assert not found, f"{importer} must not import {target} ({why}):\n" + "\n".join(found)


def test_only_main_and_the_cli_itself_import_the_cli():
    allowed = {"MedPrepLib.__main__"}
    found = violations(
        lambda n: within(n, "MedPrepLib") and n not in allowed and not within(n, "MedPrepLib.cli"),
        lambda m: within(m, "MedPrepLib.cli"),
    )
    assert not found, "the library must not depend on its command line:\n" + "\n".join(found)


def test_the_volume_layer_imports_no_source_step_or_command():
    above = ("MedPrepLib.dicom", "MedPrepLib.recipe", "MedPrepLib.cli", "MedPrepLib.export")
    found = violations(lambda n: n in VOLUME_LAYER, lambda m: any(within(m, a) for a in above), transitive=True)
    assert not found, "\n".join(found)


def test_the_slicer_core_does_not_import_the_panel_the_module_or_the_self_tests():
    found = violations(
        lambda n: within(n, "MedPrepCore"),
        lambda m: m.split(".")[0] in {"MedPrep", "MedPrepGui", "MedPrepSelfTest"},
        transitive=True,
    )
    assert not found, "\n".join(found)
