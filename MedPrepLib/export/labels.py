"""The dataset's label table, and the check every case's label passes before it is written.

**The label table** (:class:`LabelTable`) is one for the whole dataset: label names -> the voxel
values written (``{"background": 0, "liver": 1, "tumour": 2}``), and a remap of the values found
in the source label files onto those values. It comes from a label map file (``--label-map
labels.json``, :func:`read_label_map`) or, without one, from the values found in the labels
(:meth:`LabelTable.from_values`: ``label_1``, ``label_2``...), decided once for the dataset.
:func:`~.cases.check_label_table` checks it (background 0; consecutive values for nnU-Net).

The label map file is a JSON object in one of three shapes::

    {"labels": {"liver": 1, "tumour": 2}, "remap": {"3": 1, "4": 2, "9": 0}}   # the full form
    {"liver": 1, "tumour": 2}                                                 # names only
    {"3": 1, "4": 2}                                                          # remap only

* ``labels``: name -> the voxel value written to the dataset. ``"background": 0`` is implied
  (give it only to state it; no other name may have 0).
* ``remap``: a value found in the source label files (an integer, written as a JSON string
  key, may be negative) -> the value written. Values not listed keep their value; mapping a
  value to 0 erases that structure. Every value a label holds after the remap must be in
  ``labels``, else the case is refused.
* An object whose keys are all integers is the remap alone; its labels are then named after
  their values (``label_1``...). An object whose keys are all names is the labels alone (no
  remap). Mixing the two in one flat object is refused: use the full form.

**The per-case check** (:func:`prepare_label`) returns the label as the dataset stores it, on
exactly its image's grid, with uint8 values (uint16 when a value exceeds 255), and the facts the
report and the splits need (:class:`LabelFacts`). Grids: the same grid as the image within
:data:`~MedPrepLib.recipe.run.LABEL_GRID_TOLERANCE_MM` (spacing and origin, mm; direction within
1e-5) counts as the same and takes the image's grid exactly; otherwise ``grid_policy="reject"``
refuses the case (:class:`~MedPrepLib.errors.LabelError` naming both grids: "the label has 119
slices, the image 120") and ``"resample"`` resamples it onto the image grid with the engine of
:mod:`MedPrepLib.processing.resample` (nearest neighbour, or per-label linear with
``interpolation="label_linear"``; voxels outside the label's field of view become background),
refusing a label value that vanishes. Values must be integers (a 0.5 is refused: the file was
resampled with linear interpolation somewhere) and, after the remap, in the table. An empty label
(background only) is a warning, not an error.

>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> table = parse_label_map({"labels": {"liver": 1, "tumour": 2}, "remap": {"7": 2}})
>>> dict(table.labels)
{'background': 0, 'liver': 1, 'tumour': 2}
>>> image = Volume(np.zeros((2, 2, 2), np.int16), spacing=(1.0, 1.0, 2.0))
>>> label, facts = prepare_label(Volume(np.array([[[0, 1], [7, 7]]] * 2, np.int16), spacing=(1.0, 1.0, 2.0)), image, table)
>>> label.dtype, facts.present, facts.voxels, facts.volumes_ml
(dtype('uint8'), (1, 2), {'liver': 2, 'tumour': 4}, {'liver': 0.004, 'tumour': 0.008})
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ..errors import ExportError, LabelError
from ..geometry import Geometry
from ..jsonfiles import read_json
from ..processing.resample import LABEL_INTERPOLATIONS, label_values, resample
from ..recipe.run import LABEL_GRID_TOLERANCE_MM
from ..volume import Volume
from .cases import check_label_table

GRID_POLICIES = ("reject", "resample")
"""What :func:`prepare_label` does with a label on another grid than its image's."""

LABEL_DIRECTION_TOLERANCE = 1e-5
"""How far the label's direction cosines may differ from the image's on the same grid."""

MAX_LABEL_VALUE = np.iinfo(np.uint16).max

_INTEGER = re.compile(r"^[+-]?\d+$")


def _default_name(value: int) -> str:
    return "background" if value == 0 else f"label_{value}"


@dataclass(frozen=True)
class LabelTable:
    """The dataset's labels: ``labels`` name -> written voxel value (ordered by value, with
    ``"background": 0``), and ``remap`` source voxel value -> written value (values not in it
    are kept). Immutable; build it with :func:`parse_label_map`, :func:`read_label_map` or
    :meth:`from_values`."""

    labels: Mapping[str, int]
    remap: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self):
        labels = dict(self.labels)
        labels.setdefault("background", 0)
        labels = check_label_table(labels)
        if max(labels.values()) > MAX_LABEL_VALUE:
            raise ExportError(
                f"label value {max(labels.values())} does not fit a label file (at most {MAX_LABEL_VALUE})"
            )
        remap = {}
        for source, target in dict(self.remap).items():
            if (
                isinstance(source, bool)
                or isinstance(target, bool)
                or not isinstance(source, int)
                or not isinstance(target, int)
            ):
                raise ExportError(f"label remap {source!r} -> {target!r}: both must be integers")
            if target not in labels.values():
                raise ExportError(
                    f"the label remap sends {source} to {target}, which the label table does not name",
                    hint=f'add a name for {target} to "labels" (values named: {sorted(labels.values())})',
                )
            remap[int(source)] = int(target)
        object.__setattr__(self, "labels", MappingProxyType(labels))
        object.__setattr__(self, "remap", MappingProxyType(dict(sorted(remap.items()))))

    def __reduce__(self):
        """Pickle as plain dicts (mapping proxies do not pickle): worker processes get the table."""
        return (type(self), (dict(self.labels), dict(self.remap)))

    @classmethod
    def from_values(cls, values: Iterable[int]) -> LabelTable:
        """The table for labels without a label map: every value found (over the whole dataset)
        named ``label_<value>``, 0 ``background``.

        >>> dict(LabelTable.from_values([2, 0, 1]).labels)
        {'background': 0, 'label_1': 1, 'label_2': 2}
        """
        found = sorted({int(v) for v in values} | {0})
        if found[0] < 0:
            raise ExportError(
                f"the labels hold the negative value {found[0]}",
                hint='map it with a label map (--label-map), e.g. {"remap": {"-1": 0}}',
            )
        return cls({_default_name(v): v for v in found})

    @property
    def values(self) -> tuple[int, ...]:
        """The written voxel values, ascending (0 first)."""
        return tuple(self.labels.values())

    def name(self, value: int) -> str:
        """The name of a written voxel value."""
        for name, v in self.labels.items():
            if v == value:
                return name
        raise KeyError(value)

    def checked(self, *, consecutive: bool = False) -> dict[str, int]:
        """The name -> value table for a format's index, checked (``consecutive`` for nnU-Net)."""
        return check_label_table(self.labels, consecutive=consecutive)

    def to_dict(self) -> dict:
        """The full JSON form (what :func:`parse_label_map` reads back), for provenance."""
        return {"labels": dict(self.labels), "remap": {str(k): v for k, v in self.remap.items()}}


def parse_label_map(obj: object, *, where: str = "label map") -> LabelTable:
    """A :class:`LabelTable` from the JSON of a label map (the three shapes of the module doc).

    >>> dict(parse_label_map({"3": 1}).labels), dict(parse_label_map({"3": 1}).remap)
    ({'background': 0, 'label_1': 1}, {3: 1})
    """
    hint = 'write {"labels": {"liver": 1, ...}, "remap": {"3": 1, ...}}'
    if not isinstance(obj, dict) or not obj:
        raise ExportError(f"{where}: must be a non-empty JSON object", hint=hint)
    if set(obj) <= {"labels", "remap"} and all(isinstance(v, dict) for v in obj.values()):
        names, remap = obj.get("labels"), obj.get("remap", {})
    elif all(_INTEGER.match(str(k).strip()) for k in obj):
        names, remap = None, obj
    elif not any(_INTEGER.match(str(k).strip()) for k in obj):
        names, remap = obj, {}
    else:
        raise ExportError(f"{where}: mixes label names and source values as keys", hint=hint)
    parsed_remap = {}
    for key, target in remap.items():
        if not _INTEGER.match(str(key).strip()):
            raise ExportError(f"{where}: remap key {key!r} is not an integer voxel value", hint=hint)
        if isinstance(target, bool) or not isinstance(target, int):
            raise ExportError(f"{where}: remap {key!r} -> {target!r}: the target must be an integer", hint=hint)
        parsed_remap[int(str(key).strip())] = target
    if names is None:
        names = {_default_name(v): v for v in sorted(set(parsed_remap.values()) | {0})}
    for name, value in names.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExportError(f"{where}: label {name!r} has value {value!r}; values are integers >= 0", hint=hint)
    try:
        return LabelTable(names, parsed_remap)
    except ExportError as exc:
        raise ExportError(f"{where}: {exc.message}", hint=exc.hint) from None


def read_label_map(path: str | os.PathLike) -> LabelTable:
    """Read a label map file (``--label-map labels.json``; shapes in the module doc)."""
    return parse_label_map(read_json(path, what="label map", invalid=ExportError), where="label map")


@dataclass(frozen=True)
class LabelFacts:
    """What one case's label holds, once on the image grid and remapped.

    ``present``: the non-zero written values it holds, ascending. ``voxels`` and ``volumes_ml``:
    per non-background name of the table, in table order, the voxel count and the volume in
    millilitres (voxel count times the product of the spacing in mm, / 1000); 0 when absent.
    ``resampled``: whether the label was resampled onto the image grid. ``warnings``: what the
    report shows (an empty label, a resampling); never identifying.
    """

    present: tuple[int, ...]
    voxels: Mapping[str, int]
    volumes_ml: Mapping[str, float]
    resampled: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.present

    def to_dict(self) -> dict:
        return {
            "present": list(self.present),
            "voxels": dict(self.voxels),
            "volumes_ml": dict(self.volumes_ml),
            "resampled": self.resampled,
            "warnings": list(self.warnings),
        }


def found_values(label: Volume) -> tuple[int, ...]:
    """The distinct integer values of a source label (before any remap), ascending; refuses a
    label that is not a scalar volume or holds non-integer values (:class:`LabelError`).

    For a dataset without a label map, the union over its labels makes the table
    (:meth:`LabelTable.from_values`)."""
    return tuple(int(v) for v in label_values(_integer_array(label)))


def _integer_array(label: Volume) -> np.ndarray:
    array = label.array
    if array.ndim != 3:
        raise LabelError(
            f"the label has {array.shape[3]} components per voxel; a label is one integer per voxel",
            hint="save the label as a single-component labelmap",
        )
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind != "f":
        raise LabelError(f"the label holds {array.dtype} voxels; label files hold integer class values")
    if not np.all(np.isfinite(array)):
        raise LabelError("the label holds NaN or infinite values; label files must hold integer class values")
    fractional = array != np.round(array)
    if fractional.any():
        example = float(array[fractional].flat[0])
        raise LabelError(
            f"the label holds non-integer values (e.g. {example:g}); label files must hold integer class values",
            hint="was it resampled with linear interpolation? resample labels with nearest neighbour",
        )
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    wide = low < np.iinfo(np.int32).min or high > np.iinfo(np.int32).max
    return array.astype(np.int64 if wide else np.int32)


def _remap(array: np.ndarray, table: LabelTable) -> np.ndarray:
    """The written values (uint8, or uint16 when the table goes above 255); refuses a value the
    table does not name."""
    dtype = np.uint8 if max(table.values) <= np.iinfo(np.uint8).max else np.uint16
    allowed = set(table.values)
    source = [int(v) for v in label_values(array)]
    target = {v: table.remap.get(v, v) for v in source}
    unknown = sorted(v for v in source if target[v] not in allowed)
    if unknown:
        shown = ", ".join(str(v) for v in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise LabelError(
            f"the label holds value(s) {shown}, which the label table does not name "
            f"(values: {', '.join(f'{v} {n}' for n, v in table.labels.items())})",
            hint="add them to the label map (--label-map), or remap them",
        )
    if all(target[v] == v for v in source):
        return array.astype(dtype)
    if source and source[0] >= 0 and source[-1] < (1 << 16):
        lut = np.zeros(source[-1] + 1, dtype)
        for v in source:
            lut[v] = target[v]
        return lut[array]
    keys = np.array(source, array.dtype)
    return np.array([target[v] for v in source], dtype)[np.searchsorted(keys, array)]


def _grid_words(geometry: Geometry) -> str:
    sx, sy, sz = geometry.size
    return (
        f"{sx} x {sy} x {sz} voxels (x, y, z), spacing {tuple(round(s, 4) for s in geometry.spacing)} mm, "
        f"origin {tuple(round(o, 3) for o in geometry.origin)} mm LPS, orientation {geometry.orientation}"
    )


def describe_grid_difference(label: Geometry, image: Geometry) -> str:
    """How a label's grid differs from its image's, in words ("the label has 119 slices, the
    image 120"), followed by both grids. No file names: geometry only.

    >>> describe_grid_difference(Geometry((4, 4, 119)), Geometry((4, 4, 120))).split(" (label:")[0]
    'the label has 119 slices, the image 120'
    """
    parts = []
    if label.size[2] != image.size[2]:
        parts.append(f"the label has {label.size[2]} slices, the image {image.size[2]}")
    if label.size[:2] != image.size[:2]:
        parts.append(
            f"the label's slices are {label.size[0]} x {label.size[1]} voxels (x, y), the image's {image.size[0]} x {image.size[1]}"
        )
    if not np.allclose(label.spacing, image.spacing, rtol=0, atol=LABEL_GRID_TOLERANCE_MM):
        parts.append(f"the label's spacing is {label.spacing} mm, the image's {image.spacing} mm")
    shift = float(np.linalg.norm(np.subtract(label.origin, image.origin)))
    if shift > LABEL_GRID_TOLERANCE_MM:
        parts.append(f"the label's origin is {shift:.3g} mm from the image's")
    if not np.allclose(label.direction, image.direction, rtol=0, atol=LABEL_DIRECTION_TOLERANCE):
        parts.append(f"the label's axes point another way ({label.orientation}, the image {image.orientation})")
    return "; ".join(parts) + f" (label: {_grid_words(label)}; image: {_grid_words(image)})"


def prepare_label(
    label: Volume,
    image: Volume,
    table: LabelTable,
    *,
    grid_policy: str = "reject",
    interpolation: str = "nearest",
    threads: int | None = None,
) -> tuple[Volume, LabelFacts]:
    """The label as the dataset stores it, and its facts (see the module docstring).

    ``label`` and ``image`` are volumes on LPS grids ((z, y, x) arrays; the image may have
    channels). Returns a (z, y, x) uint8 label (uint16 when the table has a value above 255) on
    exactly ``image.geometry``, holding only values of ``table``. ``grid_policy`` ("reject" or
    "resample") and ``interpolation`` ("nearest" or "label_linear", for "resample") decide what
    happens to a label on another grid. Raises :class:`~MedPrepLib.errors.LabelError` (the
    export quarantines the case) for a label it refuses; never modifies its inputs.
    """
    if grid_policy not in GRID_POLICIES:
        raise ExportError(f"unknown label grid policy {grid_policy!r} (known: {', '.join(GRID_POLICIES)})")
    if interpolation not in LABEL_INTERPOLATIONS:
        raise ExportError(f"unknown label interpolation {interpolation!r} (known: {', '.join(LABEL_INTERPOLATIONS)})")
    target = image.geometry
    same_grid = label.geometry == target or label.geometry.isclose(
        target, atol_mm=LABEL_GRID_TOLERANCE_MM, atol_dir=LABEL_DIRECTION_TOLERANCE
    )
    if not same_grid and grid_policy == "reject":
        raise LabelError(
            "the label is not on its image's grid: " + describe_grid_difference(label.geometry, target),
            hint="fix the label file, or let the export resample labels onto their images (label grid policy 'resample')",
        )
    written = _remap(_integer_array(label), table)
    warnings = []
    if same_grid:
        out = Volume(written, target, metadata={"is_label": True})
    else:
        before = set(label_values(written).tolist())
        out = resample(
            Volume(written, label.geometry, metadata={"is_label": True}),
            target,
            interpolation=interpolation,
            fill_value=0,
            threads=threads,
        )
        out = Volume(out.array, target, metadata={"is_label": True})
        after = set(label_values(out.array).tolist())
        lost = sorted(before - after - {0})
        if lost:
            raise LabelError(
                f"label {', '.join(f'{v} ({table.name(v)})' for v in lost)} vanished when the label was resampled "
                f"onto its image's grid ({interpolation}): " + describe_grid_difference(label.geometry, target),
                hint="the label does not cover its image, or the structure is smaller than an image voxel; fix the label file",
            )
        warnings.append(
            f"the label was resampled onto its image's grid ({interpolation}): "
            + describe_grid_difference(label.geometry, target)
        )
    counts = np.bincount(out.array.reshape(-1), minlength=max(table.values) + 1) if out.array.size else np.zeros(1, int)
    ml_per_voxel = float(np.prod(target.spacing)) / 1000.0
    voxels = {name: int(counts[v]) for name, v in table.labels.items() if v != 0}
    present = tuple(v for v in table.values if v != 0 and counts[v])
    if not present:
        warnings.append("the label is empty (background only)")
    facts = LabelFacts(
        present=present,
        voxels=voxels,
        volumes_ml={name: round(n * ml_per_voxel, 6) for name, n in voxels.items()},
        resampled=not same_grid,
        warnings=tuple(warnings),
    )
    return out, facts
