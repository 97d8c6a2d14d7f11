"""MedPrep.py, its panel (MedPrepGui), its .ui and its icon agree; the logic and self-test run on slicer-core.

Static checks (no Slicer needed): ``MedPrep.py`` stays thin and declares the template's classes;
the panel's files stay small; every ``self.ui.<name>`` the Qt-side code (``MedPrep.py``,
``MedPrepGui/``) uses exists in ``Resources/UI/MedPrep.ui`` and every widget the sections use is
there; every call any panel file makes of the logic names a method of ``MedPrepLogic`` with
keyword arguments it takes (no ``**`` the check could not see through), and every callback a
panel class connects is one of its methods; every section the panel holds has the methods it
calls on them; the .ui declares its custom widgets and gives every node selector the scene; the
icon is a valid 128 x 128 PNG. The parameter node's checks are in test_slicer_parameter_node.py.

With the slicer-core wheel: ``MedPrep.py`` itself is imported with stand-ins for the few
application-only modules (``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``,
``slicer.i18n``), and its ``MedPrepLogic`` and self-test run on a real MRML scene; the self-test
case files import with qt and ctk blocked.
"""

from __future__ import annotations

import ast
import importlib.util
import struct
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_FILE = REPO / "MedPrep" / "MedPrep.py"
PANEL_FILE = REPO / "MedPrep" / "MedPrepGui" / "Panel.py"
GUI_FILES = sorted((REPO / "MedPrep" / "MedPrepGui").glob("*.py"))
PARAMETER_FILE = REPO / "MedPrep" / "MedPrepGui" / "ParameterNode.py"
CORE_LOGIC_FILE = REPO / "MedPrep" / "MedPrepCore" / "ModuleLogic.py"
QT_SIDE_FILES = [MODULE_FILE, *GUI_FILES]
UI_FILE = REPO / "Resources" / "UI" / "MedPrep.ui"
ICON_FILE = REPO / "Resources" / "Icons" / "MedPrep.png"

sys.path.insert(0, str(REPO / "Testing" / "Slicer"))
import application_stand_ins  # noqa: E402


def ui_widgets() -> dict[str, dict]:
    """{object name: {"class": ..., "parameter": SlicerParameterName or None}} of the .ui."""
    root = ET.parse(UI_FILE).getroot()
    widgets = {}
    for widget in root.iter("widget"):
        parameter = None
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                parameter = prop.findtext("string")
        widgets[widget.get("name")] = {"class": widget.get("class"), "parameter": parameter}
    return widgets


def module_tree(path: Path = MODULE_FILE) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def qt_side_trees() -> list[ast.Module]:
    """The parsed Qt-side files: MedPrep.py and every file of MedPrepGui/."""
    return [module_tree(path) for path in QT_SIDE_FILES]


def class_defs(path: Path) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in module_tree(path).body if isinstance(n, ast.ClassDef)}


# --- static checks ------------------------------------------------------------------------------


def test_module_file_compiles():
    for path in QT_SIDE_FILES:
        compile(path.read_text(), str(path), "exec")


def test_module_file_is_thin():
    """MedPrep.py declares the module and nothing else; the panel, the work and the tests live in packages."""
    lines = MODULE_FILE.read_text().splitlines()
    assert len(lines) <= 100, f"MedPrep.py has {len(lines)} lines: move code into MedPrepGui/ or MedPrepCore/"
    top = [n for n in module_tree().body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    assert {n.name for n in top} == {"_makeMedPrepImportable", "MedPrep", "MedPrepWidget", "MedPrepLogic", "MedPrepTest"}


def test_module_defines_the_template_classes():
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in module_tree().body if isinstance(n, ast.ClassDef)}
    assert classes["MedPrep"] == ["ScriptedLoadableModule"]
    assert classes["MedPrepWidget"][0] == "ScriptedLoadableModuleWidget"
    # Slicer's logic base first (parameter node, module name), then the Qt-free operations
    assert classes["MedPrepLogic"] == ["ScriptedLoadableModuleLogic", "ModuleLogic"]
    assert classes["MedPrepTest"] == ["ScriptedLoadableModuleTest"]
    assert "MedPrepParameterNode" in class_defs(PARAMETER_FILE)
    imported = {a.name for n in module_tree().body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"MedPrepParameterNode", "ModuleLogic"} <= imported  # so MedPrep.MedPrepParameterNode is the class


def test_every_ui_attribute_the_module_uses_exists_in_the_ui_file():
    used = {
        node.attr
        for tree in qt_side_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    sections = {"dicomTreeWidget", "sceneVolumesTable", "recipeStepsWidget", "recipeStatusLabel", "previewButton"}
    assert sections | {"exportButton", "openReportButton", "exportSummaryLabel", "statusLabel"} <= used  # the walk finds them
    missing = used - set(ui_widgets())
    assert not missing, f"the Qt-side code uses self.ui.{sorted(missing)} which MedPrep.ui does not define"


def _method_parameters(path: Path, className: str) -> dict[str, set[str]]:
    """{method: names of its parameters} of a class."""
    cls = class_defs(path)[className]
    out = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            out[node.name] = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    return out


def _logic_parameters() -> dict[str, tuple[set[str], int]]:
    """{method: (the names it takes by keyword, how many arguments it takes by position)} of the logic.

    ``ModuleLogic`` needs no Slicer: it is imported and its methods read with ``inspect.signature``,
    so a method that is a ``MedPrepCore`` function set in the class body (``process =
    staticmethod(Processing.processVolumeNode)``) counts with that function's parameters.
    ``MedPrepLogic``'s own methods are read from ``MedPrep.py``, which needs the application.
    """
    import inspect

    sys.path.insert(0, str(REPO / "MedPrep"))
    try:
        ModuleLogic = importlib.import_module("MedPrepCore.ModuleLogic").ModuleLogic
    finally:
        sys.path.remove(str(REPO / "MedPrep"))
    assert inspect.getsourcefile(ModuleLogic) == str(CORE_LOGIC_FILE)
    out = {}
    logic = ModuleLogic()
    for name in dir(ModuleLogic):
        if name.startswith("_") or not callable(getattr(ModuleLogic, name)):
            continue
        parameters = inspect.signature(getattr(logic, name)).parameters.values()  # without self
        keyword = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
        out[name] = (keyword, positional)
    for name, parameters in _method_parameters(MODULE_FILE, "MedPrepLogic").items():
        out[name] = (parameters - {"self"}, len(parameters) - 1)
    return out


def _logic_calls() -> list[tuple[str, ast.Call]]:
    """(file name, call) of every ``self.logic.<method>(...)`` in the panel's files."""
    return [
        (path.name, node)
        for path in GUI_FILES
        for node in ast.walk(module_tree(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and ast.unparse(node.func.value) == "self.logic"
    ]


def test_every_call_the_panel_makes_of_the_logic_is_a_logic_method_with_those_arguments():
    """The panel's calls against the logic's real signatures (``MedPrepCore.ModuleLogic``, the contract)."""
    methods = _logic_parameters()
    assert {"process", "exportVolume", "loadDicom", "getParameterNode"} <= set(methods)  # delegated ones included
    calls = _logic_calls()
    expected = {"getParameterNode", "dicomDatabaseTree", "loadDicom", "preview", "exportDataset"}
    assert {c.func.attr for _, c in calls} == expected  # the walk finds them, and the panel uses no other
    for where, call in calls:
        name = call.func.attr
        assert name in methods, f"{where}: the panel calls logic.{name}, which MedPrepLogic does not have"
        keywords, positional = methods[name]
        assert all(k.arg for k in call.keywords), f"{where}: logic.{name}(**...) cannot be checked"
        assert not any(isinstance(a, ast.Starred) for a in call.args), f"{where}: logic.{name}(*...) cannot be checked"
        unknown = {k.arg for k in call.keywords} - keywords
        assert not unknown, f"{where}: logic.{name} takes no {sorted(unknown)}"
        assert len(call.args) <= positional, f"{where}: logic.{name}: too many positional arguments"
    progress = {c.func.attr for _, c in calls if any(k.arg == "progressCallback" for k in c.keywords)}
    assert progress == expected - {"getParameterNode"}  # every long call behind the progress dialog


def _gui_classes() -> dict[str, ast.ClassDef]:
    return {n.name: n for path in GUI_FILES for n in module_tree(path).body if isinstance(n, ast.ClassDef)}


def test_every_callback_a_panel_class_connects_is_one_of_its_methods():
    classes = _gui_classes()
    connected = set()
    for cls in classes.values():
        methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        bases = [classes[ast.unparse(b)] for b in cls.bases if ast.unparse(b) in classes]
        methods |= {n.name for b in bases for n in b.body if isinstance(n, ast.FunctionDef)}
        referenced = {
            node.attr
            for node in ast.walk(cls)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and isinstance(node.ctx, ast.Load)
            and node.attr.startswith(("on", "_update"))
        }
        assert referenced - methods == set(), f"{cls.name} references {sorted(referenced - methods)}"
        connected |= referenced
    assert {"onPreviewButton", "onExportButton", "onScanButton", "onFormChanged", "onSceneStartClose"} <= connected
    widgetMethods = _method_parameters(MODULE_FILE, "MedPrepWidget")
    panelMethods = {n.name for n in classes["MedPrepPanel"].body if isinstance(n, ast.FunctionDef)}
    forwarded = {"cleanup", "enter", "exit"}
    assert forwarded <= set(widgetMethods) and forwarded <= panelMethods  # the module widget forwards its life cycle


def test_every_section_of_the_panel_has_what_the_panel_calls_on_it():
    classes = _gui_classes()
    panel = classes["MedPrepPanel"]
    made = next(
        n.value for n in ast.walk(panel) if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "self.sections"
    )
    sections = [ast.unparse(e.func) for e in made.elts]
    assert sections == ["DicomBrowser", "ScenePairs", "RecipeEditor", "PreviewSection", "ExportSection"]
    called = {n.attr for n in ast.walk(panel) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "section"}
    assert called == {"setParameterNode", "updateFromParameterNode"}
    for name in sections:
        assert called <= {n.name for n in classes[name].body if isinstance(n, ast.FunctionDef)}, name


def test_the_panel_files_are_small_and_have_one_job_each():
    for path in GUI_FILES:
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.name} has {lines} lines: split it"
        assert ast.get_docstring(module_tree(path)), f"{path.name} says in its docstring what it holds"
    assert len(PANEL_FILE.read_text().splitlines()) <= 150  # the panel only assembles the sections


def test_user_visible_strings_are_translatable():
    """Texts put on the panel or in the module description go through ``_()``/``translate()``."""
    visible = {"text", "toolTip", "title", "helpText", "acknowledgementText", "labelText", "windowTitle"}

    def translated(value: ast.expr) -> bool:
        if isinstance(value, ast.IfExp):
            return translated(value.body) and translated(value.orelse)
        if isinstance(value, ast.Call):
            func = value.func
            if isinstance(func, ast.Name) and func.id in ("_", "translate"):
                return True
            if isinstance(func, ast.Attribute) and func.attr == "format":  # _("... {x}").format(x=...)
                return translated(func.value)
        return not isinstance(value, (ast.Constant, ast.JoinedStr))  # a variable, not a literal

    checked = 0
    for node in (n for tree in qt_side_trees() for n in ast.walk(tree)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in visible:
                    checked += 1
                    assert translated(node.value), f"line {node.lineno}: {ast.unparse(node)} is not translatable"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "createProgressDialog"
        ):
            for keyword in node.keywords:
                if keyword.arg in visible:
                    checked += 1
                    assert translated(keyword.value), f"line {node.lineno}: {keyword.arg} is not translatable"
    assert checked >= 8  # title, helpText, acknowledgementText, button tooltips, status texts


def test_ui_declares_its_custom_widgets_and_scene_connection():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w["class"] for w in ui_widgets().values()}
    custom = {c for c in used if c.startswith(("ctk", "qMRML"))}
    assert custom - declared == set(), f"custom widgets not declared: {custom - declared}"
    assert root.find("widget").get("class") == "qMRMLWidget"
    connections = {(c.findtext("signal"), c.findtext("receiver"), c.findtext("slot")) for c in root.iter("connection")}
    selectors = [name for name, w in ui_widgets().items() if w["class"] == "qMRMLNodeComboBox"]
    assert {"inputVolumeSelector", "labelVolumeSelector"} <= set(selectors)
    for name in selectors:  # a node selector without the scene lists nothing
        assert ("mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") in connections, name


def test_icon_is_a_valid_128_pixel_png():
    data = ICON_FILE.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, idat = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        chunks.append(kind)
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (128, 128, 8, 6) and chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    pixels = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(128, 1 + 128 * 4)
    rgba = pixels[:, 1:].reshape(128, 128, 4)
    assert rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255  # transparent background, opaque drawing


# --- MedPrep.py on slicer-core ----------------------------------------------------------------------


@pytest.fixture
def slicer_core():
    slicer = pytest.importorskip(
        "slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]') for real MRML classes"
    )
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' module found is not slicer-core")
    return slicer


@pytest.fixture
def scene(slicer_core, monkeypatch, tmp_path):
    """A real scene as ``slicer.mrmlScene``, with ``slicer.app`` and ``loadVolume`` stood in."""
    scene = application_stand_ins.newScene()
    monkeypatch.setattr(slicer_core, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer_core, "app", application_stand_ins.application(str(tmp_path)), raising=False)
    monkeypatch.setattr(slicer_core.util, "loadVolume", application_stand_ins.loadVolume(scene))
    return scene


@pytest.fixture
def medprep(slicer_core, monkeypatch):
    """MedPrep.py imported as Slicer would, from an unbuilt checkout whose root is not on sys.path."""
    for name, module in application_stand_ins.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    wrapper = sys.modules["slicer.parameterNodeWrapper"]
    for validator in ("WithinRange", "Minimum", "Maximum"):  # the parameter node's, until the stand-ins have them
        if not hasattr(wrapper, validator):
            monkeypatch.setattr(wrapper, validator, lambda *limits: limits, raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    spec = importlib.util.spec_from_file_location("MedPrep", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slicer
def test_unbuilt_checkout_makes_medpreplib_importable_and_finds_resources(medprep):
    assert sys.path[0] == str(REPO)  # the checkout root, for `import MedPrepLib`
    assert str(REPO / "MedPrep") in sys.path  # the module folder, for `import MedPrepCore`
    assert Path(medprep.resourcePath("UI/MedPrep.ui")) == UI_FILE
    assert Path(medprep.resourcePath("Icons/MedPrep.png")) == ICON_FILE
    with pytest.raises(FileNotFoundError, match="nothing.ui"):
        medprep.resourcePath("UI/nothing.ui")


@pytest.mark.slicer
def test_module_metadata_is_set(medprep):
    parent = types.SimpleNamespace()
    medprep.MedPrep(parent)
    assert parent.title == "MedPrep" and parent.categories and parent.contributors
    assert "export" in parent.helpText.lower() and parent.acknowledgementText


@pytest.mark.slicer
def test_logic_process_round_trips_an_oblique_volume(medprep, scene):
    from MedPrepCore import SampleVolumes, VolumeNodes  # importable: MedPrep.py put its folder on sys.path

    volume = SampleVolumes.obliqueVolume(np.int16)
    node = VolumeNodes.nodeFromVolume(scene, volume, "CT")
    logic = medprep.MedPrepLogic()
    fractions = []
    out = logic.process(node, progressCallback=lambda label, f: fractions.append(f))
    assert out.GetScene() is scene and out is not node and fractions[-1] == 1.0
    back = logic.volume(out)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry == volume.geometry


@pytest.mark.slicer
def test_logic_export_writes_into_the_folder_and_refuses_bad_folders(medprep, scene, tmp_path):
    pytest.importorskip("MedPrepLib.imageio", reason="MedPrepLib.imageio is not there yet")
    from MedPrepCore import SampleVolumes, VolumeNodes

    from MedPrepLib.errors import ExportError, OutputExistsError
    from MedPrepLib.imageio import read_image

    volume = SampleVolumes.obliqueVolume(np.float32)
    node = VolumeNodes.nodeFromVolume(scene, volume, "T1 post")
    logic = medprep.MedPrepLogic()
    path = logic.exportVolume(node, tmp_path, outputFormat=".mha")
    assert path == tmp_path / "T1_post.mha"
    back = read_image(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry.isclose(volume.geometry, atol_mm=1e-9, atol_dir=1e-12)
    with pytest.raises(OutputExistsError):
        logic.exportVolume(node, tmp_path, outputFormat=".mha")
    for folder in (Path("."), tmp_path / "missing"):
        with pytest.raises(ExportError, match="output folder"):
            logic.exportVolume(node, folder)


@pytest.mark.slicer
def test_module_self_test_runs_on_slicer_core(medprep, scene):
    """MedPrepTest as Slicer runs it (Slicer's loadVolume stood in by the storage node it uses)."""
    pytest.importorskip("MedPrepLib.imageio", reason="MedPrepLib.imageio is not there yet")
    from MedPrepSelfTest import VolumeRoundTripTestCase

    case = VolumeRoundTripTestCase.VolumeRoundTripTestCase("test_ObliqueVolumeRoundTrip", medprep.MedPrepLogic)
    case.setUp()
    case.test_ObliqueVolumeRoundTrip()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2
    case.setUp()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # setUp clears the scene
    test = medprep.MedPrepTest()
    test.setUp()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
    test.runTest()  # every case file, as Slicer runs it


@pytest.mark.slicer
def test_self_test_runs_every_case_file_and_reports_a_failure(medprep, scene, capsys, monkeypatch):
    """MedPrepTest runs each *TestCase.py (none forgotten) and fails, naming the case, when one fails."""
    pytest.importorskip("MedPrepLib.imageio", reason="MedPrepLib.imageio is not there yet")
    import MedPrepSelfTest

    files = sorted(p.stem for p in (REPO / "MedPrep" / "MedPrepSelfTest").glob("*TestCase.py"))
    assert [m.rpartition(".")[2] for m in MedPrepSelfTest.caseModules()] == files and len(files) >= 5
    assert {c.__name__ for c in MedPrepSelfTest.caseClasses()} == set(files)
    assert {"PreviewTestCase", "DatasetExportTestCase"} <= set(files)
    tests = MedPrepSelfTest.suite(medprep.MedPrepLogic).countTestCases()
    result = MedPrepSelfTest.runCases(medprep.MedPrepLogic, print)
    assert result.testsRun == tests >= 5 and "Export to NRRD and read back" in capsys.readouterr().out

    class BrokenLogic(medprep.MedPrepLogic):
        def exportVolume(self, *args, **kwargs):  # writes nothing
            return Path(scene.GetRootDirectory()) / "nothing.nrrd"

    with pytest.raises(AssertionError, match=rf"1 of {tests} failed[\s\S]*ExportTestCase\.test_ExportReadsBackWithSameGeometry"):
        MedPrepSelfTest.runCases(BrokenLogic, print)
    monkeypatch.setattr(MedPrepSelfTest, "caseClasses", list)  # case files that define no case
    with pytest.raises(AssertionError, match="no test cases found"):
        MedPrepSelfTest.runCases(medprep.MedPrepLogic, print)


@pytest.mark.slicer
def test_self_test_cases_import_without_qt(slicer_core):
    """The case files import under slicer-core with qt, ctk and Slicer's application modules blocked."""
    code = (
        "import sys\n"
        "for name in ('qt', 'ctk', 'slicer.ScriptedLoadableModule', 'slicer.parameterNodeWrapper', 'slicer.i18n'):\n"
        "    sys.modules[name] = None  # an import of any of them raises ImportError\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'MedPrep')!r}]\n"
        "import MedPrepSelfTest, MedPrepCore.ModuleLogic\n"
        "print(sorted(c.__name__ for c in MedPrepSelfTest.caseClasses()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VolumeRoundTripTestCase" in result.stdout and "ExportTestCase" in result.stdout


@pytest.mark.slicer
def test_core_logic_runs_on_a_plain_scene_without_stand_ins(slicer_core, tmp_path):
    """MedPrepCore.ModuleLogic, the body of MedPrepLogic, needs no application at all."""
    sys.path.insert(0, str(REPO / "MedPrep"))
    try:
        from MedPrepCore import SampleVolumes, VolumeNodes
        from MedPrepCore.ModuleLogic import ModuleLogic
    finally:
        sys.path.remove(str(REPO / "MedPrep"))
    from MedPrepLib.errors import MedPrepError

    scene = application_stand_ins.newScene()
    volume = SampleVolumes.obliqueVolume(np.int16)
    logic = ModuleLogic(scene)
    out = logic.process(VolumeNodes.nodeFromVolume(scene, volume, "CT"))
    assert out.GetScene() is scene and logic.volume(out).geometry == volume.geometry
    assert logic.exportVolume(out, tmp_path, outputFormat=".nrrd") == tmp_path / "CT_MedPrep.nrrd"
    with pytest.raises(MedPrepError, match="no scene"):
        ModuleLogic().loadDicom(tmp_path)
