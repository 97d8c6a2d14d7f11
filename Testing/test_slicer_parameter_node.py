"""The panel's parameter node (MedPrepGui/ParameterNode.py) against the .ui and Slicer's wrapper.

Static: every ``SlicerParameterName`` of the .ui names a field, every field has a widget of a
class the wrapper connects to its type (or is one of ``CODE_BOUND_FIELDS``, kept by panel code
that reads and writes it), and the choices are the core's or the library's lists.

With slicer-core: the slicer-core wheel has no ``slicer.parameterNodeWrapper``, so its rules are
mirrored here from Slicer's own ``Base/Python/slicer/parameterNodeWrapper/serializers.py`` —
which field types it can serialise (``canSerialize`` of each serializer) and how it writes them
(``str(value)`` parameters, "True"/"False", node references, ``name_<i>`` + ``name_len`` for
lists, ``name_<index of the Union member>``). Checked: every field's type is one the wrapper
serialises, defaults lie within their ``Choice``/``WithinRange``; and a real
``vtkMRMLScriptedModuleNode`` carrying every field as the wrapper writes it survives a real save
of the scene to ``.mrml`` and a load into a new scene: the same strings, the references resolved
to the reloaded nodes. The wrapper itself (and ``connectGui``) runs only in Slicer.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys
import types
import typing

import pytest
from test_slicer_ui import REPO, UI_FILE, application_stand_ins, module_tree, ui_widgets

PARAMETER_FILE = REPO / "MedPrep" / "MedPrepGui" / "ParameterNode.py"
GUI_FOLDER = REPO / "MedPrep" / "MedPrepGui"

# Which widget classes Slicer's parameter-node wrapper connects to which field types
# (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py; it matches the class exactly).
CONNECTABLE = {
    "node": {"qMRMLNodeComboBox"},
    "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "choice": {"QComboBox"},
    "bool": {"QCheckBox", "QPushButton"},
    "str": {"QLineEdit", "QTextEdit"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
}
PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)


def parameter_class() -> ast.ClassDef:
    node = next((n for n in module_tree(PARAMETER_FILE).body if isinstance(n, ast.ClassDef)), None)
    assert node is not None and node.name == "MedPrepParameterNode", f"MedPrepParameterNode not found in {PARAMETER_FILE}"
    return node


def parameter_fields() -> dict[str, ast.expr]:
    """{field name: annotation AST} of MedPrepParameterNode."""
    node = parameter_class()
    assert "parameterNodeWrapper" in [ast.unparse(d) for d in node.decorator_list]
    return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}


def _module_value(name: str):
    """A name's value: assigned in ParameterNode.py (a literal), or imported from MedPrepCore / MedPrepLib."""
    for node in module_tree(PARAMETER_FILE).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            assert node.module.startswith(("MedPrepCore.", "MedPrepLib.")), f"{name} must come from the core or the library"
            sys.path.insert(0, str(REPO / "MedPrep"))
            try:
                return getattr(importlib.import_module(node.module), name)
            finally:
                sys.path.remove(str(REPO / "MedPrep"))
    raise AssertionError(f"{name} is neither assigned nor imported in {PARAMETER_FILE.name}")


def _choices(expr: ast.expr) -> list:
    """The values of a ``Choice(...)`` argument: a literal, or ``list(NAME)``."""
    if isinstance(expr, ast.Call) and ast.unparse(expr.func) == "list" and isinstance(expr.args[0], ast.Name):
        return list(_module_value(expr.args[0].id))
    return ast.literal_eval(expr)


def field_kind(annotation: ast.expr) -> tuple[str, list | None]:
    """(kind in CONNECTABLE, or "list"; choices or None) of a field annotation."""
    text = ast.unparse(annotation)
    if text.startswith("Annotated["):
        for extra in annotation.slice.elts[1:]:
            if isinstance(extra, ast.Call) and ast.unparse(extra.func) == "Choice":
                return "choice", _choices(extra.args[0])
        return field_kind(annotation.slice.elts[0])[0], None
    if text.startswith("list["):
        return "list", None
    if text.startswith("Union["):
        members = [ast.unparse(e) for e in annotation.slice.elts]
        assert all(m.startswith("vtkMRML") or m == "None" for m in members), text
        return "node", None
    if text.startswith("vtkMRML"):
        return "node", None
    if text in ("pathlib.Path", "Path"):
        return "path", None
    return text, None


def code_bound_fields() -> dict[str, str]:
    return _module_value("CODE_BOUND_FIELDS")


# --- static checks ------------------------------------------------------------------------------


def test_parameter_names_in_ui_match_parameter_node_fields():
    fields, codeBound = parameter_fields(), code_bound_fields()
    bound = {w["parameter"]: (name, w["class"]) for name, w in ui_widgets().items() if w["parameter"]}
    assert set(bound) - set(fields) == set(), f"SlicerParameterName without a field: {set(bound) - set(fields)}"
    assert set(fields) - set(bound) == set(codeBound), f"fields without a widget: {set(fields) - set(bound) - set(codeBound)}"
    assert set(bound) & set(codeBound) == set()
    for field, (widget, widget_class) in bound.items():
        kind, _ = field_kind(fields[field])
        assert widget_class in CONNECTABLE.get(kind, ()), (
            f"{widget} ({widget_class}) cannot be connected to field '{field}' of type {ast.unparse(fields[field])}"
        )


def test_code_bound_fields_are_read_and_written_by_the_panel():
    """Each field no widget is bound to is assigned and read by the panel file its entry names."""
    for field, keeper in code_bound_fields().items():
        path = GUI_FOLDER / f"{keeper.split(':')[0]}.py"
        tree = module_tree(path)
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == field]
        assert any(isinstance(n.ctx, ast.Store) for n in uses), f"{path.name} never writes {field}"
        assert any(isinstance(n.ctx, ast.Load) for n in uses), f"{path.name} never reads {field}"


def test_choices_are_what_the_core_and_the_library_accept():
    sys.path.insert(0, str(REPO / "MedPrep"))
    try:
        from MedPrepCore import VolumeNodes
    finally:
        sys.path.remove(str(REPO / "MedPrep"))
    from MedPrepLib.export.formats import FORMATS

    fields = parameter_fields()
    assert field_kind(fields["transformPolicy"]) == ("choice", list(VolumeNodes.TRANSFORM_POLICIES))
    assert field_kind(fields["exportFormat"]) == ("choice", list(FORMATS))
    assert field_kind(fields["inputSource"]) == ("choice", ["dicom", "scene"])
    defaults = {s.target.id: s.value for s in parameter_class().body if isinstance(s, ast.AnnAssign) and s.value}
    for name in ("transformPolicy", "exportFormat", "inputSource"):
        assert ast.literal_eval(defaults[name]) in field_kind(fields[name])[1], name


def test_spin_box_fields_have_their_range():
    """Without WithinRange the wrapper's connector sets a spin box to the whole int/float range."""
    spins = {w["parameter"] for w in ui_widgets().values() if w["class"] in ("QSpinBox", "QDoubleSpinBox") and w["parameter"]}
    assert spins == {"datasetId", "folds", "testFraction", "seed"}
    for name in spins:
        assert "WithinRange(" in ast.unparse(parameter_fields()[name]), name


# --- with slicer-core: the types the wrapper serialises, and a scene save and load ---------------------


@pytest.fixture
def parameter_node_class(monkeypatch):
    slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel for real MRML classes")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' module found is not slicer-core")
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")  # records the annotations' arguments
    wrapper.parameterNodeWrapper = lambda cls: cls
    for validator in ("Choice", "WithinRange"):
        monkeypatch.setattr(wrapper, validator, type(validator, (), {"__init__": lambda self, *a: setattr(self, "args", a)}), raising=False)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setitem(sys.modules, "slicer.i18n", application_stand_ins.modules()["slicer.i18n"])
    monkeypatch.syspath_prepend(str(REPO / "MedPrep"))
    monkeypatch.delitem(sys.modules, "MedPrepGui.ParameterNode", raising=False)
    return importlib.import_module("MedPrepGui.ParameterNode").MedPrepParameterNode


def _split(t):
    """(type, annotations) of a possibly Annotated type."""
    if typing.get_origin(t) is typing.Annotated:
        return typing.get_args(t)[0], list(t.__metadata__)
    return t, []


def serialisable(t) -> bool:
    """Whether one of the wrapper's serializers (serializers.py, their ``canSerialize``) takes ``t``."""
    import enum

    import slicer

    t, _ = _split(t)
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t in (int, float, str, bool) or t in PATH_TYPES or t is type(None):
        return True
    if isinstance(t, type) and issubclass(t, (slicer.vtkMRMLNode, enum.Enum)):
        return True
    if origin in (list, tuple, dict, typing.Union):  # (X | Y is types.UnionType: the wrapper does not take it)
        return bool(args) and all(serialisable(a) for a in args)
    return False


def test_every_field_is_a_type_the_wrapper_serialises(parameter_node_class):
    hints = typing.get_type_hints(parameter_node_class, include_extras=True)
    assert set(hints) == set(parameter_fields())
    for name, t in hints.items():
        assert serialisable(t), f"{name}: {t} is no type the parameter-node wrapper serialises"
        base, annotations = _split(t)
        default = getattr(parameter_node_class, name, None)
        if typing.get_origin(base) is typing.Union and any(hasattr(a, "GetID") for a in typing.get_args(base)):
            assert type(None) in typing.get_args(base), f"{name}: a Union of nodes needs None for its default None"
        for a in annotations:
            if type(a).__name__ == "Choice":
                assert default in a.args[0] and all(isinstance(c, base) for c in a.args[0]), name
            if type(a).__name__ == "WithinRange":
                assert a.args[0] <= default <= a.args[1] and isinstance(default, base), name


def _write(node, name, t, value, roles):
    """Write ``value`` into the scripted module node as the wrapper's serializers do."""
    import slicer

    t, _ = _split(t)
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is list:
        for i, v in enumerate(value):
            _write(node, f"{name}_{i}", args[0], v, roles)
        node.SetParameter(f"{name}_len", str(len(value)))
    elif origin is typing.Union:
        index = next(i for i, a in enumerate(args) if isinstance(value, a))
        _write(node, f"{name}_{index}", args[index], value, roles)
    elif t is type(None):
        node.SetParameter(name, "True")
    elif isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode):
        node.SetParameter(name, "")
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        roles.append(name)
    else:
        node.SetParameter(name, ("True" if value else "False") if t is bool else str(value))


def _sample(name, t, nodes):
    """A value of field ``name`` unlike its default, for the round trip."""
    t, annotations = _split(t)
    origin = typing.get_origin(t)
    choice = next((a for a in annotations if type(a).__name__ == "Choice"), None)
    if choice is not None:
        return choice.args[0][-1]
    if origin is list:
        return {"dicomSeriesUids": ["1.2.3", "1.2.4"], "sceneVolumes": [nodes["ct"], nodes["mr"]], "sceneLabels": [nodes["seg"], None]}[name]
    if origin is typing.Union:
        return nodes["labelmap"]
    return {
        str: '{\n  "version": 1,\n  "steps": [{"op": "window", "preset": "lung"}]\n} <&> "quoted"',
        int: 7, float: 0.25, bool: True, pathlib.Path: pathlib.Path("/data/out folder"),
    }.get(t, nodes["ct"])  # fmt: skip


def test_the_parameter_node_survives_a_scene_save_and_load(parameter_node_class, tmp_path):
    import slicer

    scene = slicer.vtkMRMLScene()
    nodes = {
        "ct": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT"),
        "mr": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR"),
        "labelmap": scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "CT label"),
        "seg": scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation"),
    }
    parameterNode = slicer.vtkMRMLScriptedModuleNode()  # as ScriptedLoadableModuleLogic.getParameterNode makes it
    parameterNode.SetSingletonTag("MedPrep")
    parameterNode.SetAttribute("ModuleName", "MedPrep")
    scene.AddNode(parameterNode)
    hints = typing.get_type_hints(parameter_node_class, include_extras=True)
    roles = []
    for name, t in hints.items():
        _write(parameterNode, name, t, _sample(name, t, nodes), roles)
    written = {n: parameterNode.GetParameter(n) for n in parameterNode.GetParameterNames()}
    references = {r: parameterNode.GetNodeReference(r) for r in roles}
    assert len(written) > len(hints) and len(references) == 6  # inputVolume, labelVolume, 2 + 2 list entries
    assert sum(node is None for node in references.values()) == 1  # the unlabelled volume's label

    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit() == 1
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    assert loaded.Connect() == 1
    back = loaded.GetSingletonNode("MedPrep", "vtkMRMLScriptedModuleNode")
    assert back is not None and back.GetAttribute("ModuleName") == "MedPrep"
    assert {n: back.GetParameter(n) for n in back.GetParameterNames()} == written
    for role, node in references.items():
        again = back.GetNodeReference(role)
        if node is None:
            assert again is None, role
        else:
            assert (again.GetName(), again.GetClassName()) == (node.GetName(), node.GetClassName()), role
            assert again.GetScene() is loaded
    assert UI_FILE.exists()
