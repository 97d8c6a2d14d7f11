"""The dataset's one label table for segmentation objects: structure names -> label values.

A SEG, RTSTRUCT or ``.seg.nrrd`` names its structures; their order and their numbers differ from
file to file, their spelling from person to person. :class:`SegmentLabelTable` decides, once for
the whole dataset, which value each structure gets — by its name or its coded terminology, never
by its position — so the same organ has the same value in every case. It is the export's label
map (:mod:`MedPrepLib.export.labels`: ``{"labels": {...}, "remap": {...}}``) with a few more
keys, and one file serves both label files and segmentation objects::

    {
      "labels":  {"background": 0, "liver": 1, "tumour": 2},
      "match":   {"liver": ["(?i)^liver$", "(?i)liver_gtv", {"code": "10200004", "scheme": "SCT"}],
                  "tumour": ["(?i)^(tumou?r|gtv)"],
                  "background": ["(?i)^(body|couch)$"]},
      "unmatched": "reject",
      "overlap": "regions",
      "priority": ["liver", "tumour"],
      "within": {"tumour": "liver"},
      "remap": {"3": 1}
    }

* ``labels``, ``remap``: as in the export's label map (``remap`` concerns label *files* only).
* ``match``: label name -> the patterns that also give a structure that name. A structure always
  matches a label whose name equals its own ignoring case and surrounding spaces. A string is a
  Python regular expression searched in the structure's name (``re.search``: anchor it with
  ``^...$`` to match the whole name, ``(?i)`` ignores case); ``{"name": "Liver"}`` matches that
  exact name (case counts); ``{"code": "10200004", "scheme": "SCT"}`` matches the coded type of the
  structure's terminology (``scheme`` optional; ``"category"`` and ``"modifier"`` codes too when
  given). Exact names win over patterns; a structure matched by two labels on the same footing is
  refused. Structures matched by ``background`` are known and left out of the label.
* ``unmatched``: ``"ignore"`` (the default; such structures are listed in the report and left
  out) or ``"reject"`` (the case is refused, :class:`~MedPrepLib.errors.LabelError`).
* ``overlap`` (default ``"reject"``), what to do where structures of two labels share voxels:

  - ``"reject"``: refuse the case, naming the segments and the voxel count;
  - ``"priority"``: paint the labels in the order of ``priority`` (labels not in it first, by
    value), a later label overwriting an earlier one, as TotalSegmentator does;
  - ``"regions"``: nnU-Net v2's region-based training. ``within`` says which label lies inside
    which (a tree: ``"tumour": "liver"``); a label's *region* is its own voxels and those of all
    labels inside it, and :meth:`SegmentLabelTable.nnunet_labels` writes it into dataset.json
    (``"liver": [1, 2]``, ``"regions_class_order"``). Each voxel is written the value of the
    innermost label covering it, so nnU-Net rebuilds every region from the label map exactly.
    Labels that overlap but neither lies within the other cannot be written so; the case is
    refused.

:func:`segmentation_to_label` applies the table to one :class:`~.segments.Segmentation`.

>>> import numpy as np
>>> from MedPrepLib.geometry import Geometry
>>> from .segments import Segment, Segmentation
>>> table = parse_segment_label_map({"labels": {"liver": 1, "tumour": 2}, "match": {"tumour": ["(?i)^gtv"]}})
>>> grid = Geometry.from_shape((1, 2, 4))
>>> seg = Segmentation(grid, "seg.nrrd", [
...     Segment(1, "GTV_1", (0, 0, 2), np.ones((1, 1, 2), bool)),
...     Segment(2, "Liver", (0, 0, 0), np.ones((1, 2, 2), bool))])
>>> label, report = segmentation_to_label(seg, table)
>>> label.array.tolist(), report.labels["tumour"]["segments"]
([[[1, 1, 2, 2], [1, 1, 0, 0]]], [{'number': 1, 'name': 'GTV_1', 'voxels': 2}])
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import ExportError, LabelError
from ..export.labels import LabelTable, parse_label_map
from ..jsonfiles import read_json
from ..volume import Volume
from .segments import Segment, Segmentation

OVERLAP_POLICIES = ("reject", "priority", "regions")
UNMATCHED_POLICIES = ("ignore", "reject")
_EXTRA_KEYS = ("match", "unmatched", "overlap", "priority", "within")
_CODE_KEYS = {"code", "scheme", "category", "modifier"}


def _fold(name: str) -> str:
    return name.strip().casefold()


@dataclass(frozen=True)
class _Pattern:
    """One compiled ``match`` entry; ``exact`` patterns win over the others."""

    source: str | dict
    exact: bool
    regex: re.Pattern | None = None

    def matches(self, segment: Segment) -> bool:
        if isinstance(self.source, str):
            return self.regex.search(segment.name) is not None
        if "name" in self.source:
            return segment.name == self.source["name"]
        terms = segment.terminology
        wanted = [(1, self.source["code"], self.source.get("scheme")), (0, self.source.get("category"), None),
                  (2, self.source.get("modifier"), None)]  # fmt: skip
        for index, code, scheme in wanted:
            if code is None:
                continue
            if (
                len(terms) <= index
                or terms[index][1] != str(code)
                or (scheme is not None and terms[index][0] != scheme)
            ):
                return False
        return True


def _compile(name: str, entry, where: str) -> _Pattern:
    if isinstance(entry, str):
        try:
            return _Pattern(entry, False, re.compile(entry))
        except re.error as exc:
            raise ExportError(
                f"{where}: match pattern {entry!r} of {name!r} is not a regular expression ({exc})"
            ) from None
    if isinstance(entry, dict) and set(entry) == {"name"} and isinstance(entry["name"], str):
        return _Pattern(dict(entry), True)
    if (
        isinstance(entry, dict)
        and "code" in entry
        and set(entry) <= _CODE_KEYS
        and all(isinstance(v, str) for v in entry.values())
    ):
        return _Pattern(dict(entry), False)
    raise ExportError(
        f"{where}: match entry {entry!r} of {name!r} is not a pattern",
        hint='write a regular expression "(?i)^liver$", {"name": "Liver"} or {"code": "10200004", "scheme": "SCT"}',
    )


@dataclass(frozen=True, eq=False)
class SegmentLabelTable:
    """The dataset's label table with the rules for named structures (see the module docstring).

    ``table``: the export's :class:`~MedPrepLib.export.labels.LabelTable` (names -> values, remap);
    ``match``: label name -> its patterns as given; ``unmatched``, ``overlap``: the default
    policies; ``priority``: the painting order for ``overlap="priority"``; ``within``: label ->
    the label it lies inside, for ``overlap="regions"``. Build it with
    :func:`parse_segment_label_map`, :func:`read_segment_label_map` or :meth:`from_names`.
    """

    table: LabelTable
    match: Mapping[str, tuple] = field(default_factory=dict)
    unmatched: str = "ignore"
    overlap: str = "reject"
    priority: tuple[str, ...] = ()
    within: Mapping[str, str] = field(default_factory=dict)
    where: str = "label map"

    def __post_init__(self):
        where, names = self.where, dict(self.table.labels)
        if self.unmatched not in UNMATCHED_POLICIES:
            raise ExportError(
                f"{where}: unknown unmatched policy {self.unmatched!r} (known: {', '.join(UNMATCHED_POLICIES)})"
            )
        if self.overlap not in OVERLAP_POLICIES:
            raise ExportError(
                f"{where}: unknown overlap policy {self.overlap!r} (known: {', '.join(OVERLAP_POLICIES)})"
            )
        folded: dict[str, str] = {}
        for name in names:
            if _fold(name) in folded:
                raise ExportError(
                    f"{where}: labels {folded[_fold(name)]!r} and {name!r} differ only in case; structures match names ignoring case"
                )
            folded[_fold(name)] = name
        unknown = [n for n in [*self.match, *self.priority, *self.within, *self.within.values()] if n not in names]
        if unknown:
            raise ExportError(f'{where}: {unknown[0]!r} is not a label of "labels" ({", ".join(names)})')
        if "background" in self.priority or "background" in self.within or "background" in self.within.values():
            raise ExportError(f'{where}: background has no place in "priority" or "within"')
        if len(set(self.priority)) != len(self.priority):
            raise ExportError(f'{where}: "priority" names a label twice')
        for child in self.within:
            seen, node = [child], self.within[child]
            while node is not None:
                if node in seen:
                    raise ExportError(f'{where}: "within" goes round in a circle: {" -> ".join([*seen, node])}')
                seen.append(node)
                node = self.within.get(node)
        compiled = {
            name: tuple(_compile(name, entry, where) for entry in entries) for name, entries in self.match.items()
        }
        object.__setattr__(self, "match", {name: tuple(entries) for name, entries in self.match.items()})
        object.__setattr__(self, "within", dict(self.within))
        object.__setattr__(self, "priority", tuple(self.priority))
        object.__setattr__(self, "_folded", folded)
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def from_names(cls, names: Iterable[str], **rules) -> SegmentLabelTable:
        """A table for a dataset without a label map: every structure name found in it (over all
        cases; names that differ only in case are one label) gets a value, 1, 2 ... in
        alphabetical order ignoring case — so it does not depend on the order of files or
        segments.

        >>> dict(SegmentLabelTable.from_names(["Tumour", "liver", "LIVER"]).table.labels)
        {'background': 0, 'liver': 1, 'Tumour': 2}
        """
        first: dict[str, str] = {}
        for name in names:
            if _fold(name) != "background":
                first.setdefault(_fold(name), name.strip())
        ordered = sorted(first.items(), key=lambda item: (item[0], item[1]))
        return cls(LabelTable({name: value for value, (_, name) in enumerate(ordered, start=1)}), **rules)

    # -- names -> values ---------------------------------------------------------------
    def value(self, name: str) -> int:
        return self.table.labels[name]

    def label_for(self, segment: Segment) -> str | None:
        """The label name a structure gets, or ``None`` if the table does not name it; refuses a
        structure two labels claim on the same footing (:class:`~MedPrepLib.errors.LabelError`)."""
        exact = {self._folded[_fold(segment.name)]} if _fold(segment.name) in self._folded else set()
        exact |= {n for n, ps in self._compiled.items() for p in ps if p.exact and p.matches(segment)}
        found = exact or {n for n, ps in self._compiled.items() for p in ps if not p.exact and p.matches(segment)}
        if len(found) > 1:
            raise LabelError(
                f"segment {segment.number} ({segment.name!r}) matches labels {', '.join(repr(n) for n in sorted(found))} of the label map",
                hint='make the "match" patterns of the label map exclusive (anchor regular expressions with ^...$)',
            )
        return found.pop() if found else None

    # -- regions ----------------------------------------------------------------------
    def _depth(self, name: str) -> int:
        depth = 0
        while name in self.within:
            name, depth = self.within[name], depth + 1
        return depth

    def _inside(self, inner: str, outer: str) -> bool:
        while inner in self.within:
            inner = self.within[inner]
            if inner == outer:
                return True
        return False

    def region(self, name: str) -> tuple[int, ...]:
        """The values whose voxels make up the region of ``name``: its own and those of every
        label inside it (``overlap="regions"``), ascending."""
        return tuple(sorted(v for n, v in self.table.labels.items() if n == name or self._inside(n, name)))

    def nnunet_labels(self, *, overlap: str | None = None) -> dict:
        """What nnU-Net v2's dataset.json needs about the labels: ``{"labels": {...}}``, and under
        region-based training (``overlap="regions"`` with labels inside others) each label's region
        as a list of values and ``"regions_class_order"`` (outer labels first, so nnU-Net paints
        inner ones over them). Keep the key order when writing it (``json.dump(sort_keys=False)``).

        >>> t = parse_segment_label_map({"labels": {"liver": 1, "tumour": 2}, "within": {"tumour": "liver"}, "overlap": "regions"})
        >>> t.nnunet_labels()
        {'labels': {'background': 0, 'liver': [1, 2], 'tumour': 2}, 'regions_class_order': [1, 2]}
        """
        labels = self.table.checked(consecutive=True)
        if (overlap or self.overlap) != "regions" or not self.within:
            return {"labels": labels}
        order = sorted((n for n in labels if n != "background"), key=lambda n: (self._depth(n), labels[n]))
        regions = {"background": 0}
        for name in order:
            values = self.region(name)
            regions[name] = list(values) if len(values) > 1 else values[0]
        return {"labels": regions, "regions_class_order": [labels[n] for n in order]}

    def to_dict(self) -> dict:
        """The full JSON form (what :func:`parse_segment_label_map` reads back), for provenance."""
        out = self.table.to_dict()
        if self.match:
            out["match"] = {name: list(entries) for name, entries in self.match.items()}
        out["unmatched"], out["overlap"] = self.unmatched, self.overlap
        if self.priority:
            out["priority"] = list(self.priority)
        if self.within:
            out["within"] = dict(self.within)
        return out


def parse_segment_label_map(obj: object, *, where: str = "label map") -> SegmentLabelTable:
    """A :class:`SegmentLabelTable` from the JSON of a label map: any shape the export's
    :func:`~MedPrepLib.export.labels.parse_label_map` reads, or its full form with the keys of
    the module docstring. A bad map is an :class:`~MedPrepLib.errors.ExportError`."""
    if not isinstance(obj, dict) or not any(key in obj for key in _EXTRA_KEYS):
        return SegmentLabelTable(parse_label_map(obj, where=where), where=where)
    base = {k: v for k, v in obj.items() if k not in _EXTRA_KEYS}
    if "labels" not in base:
        raise ExportError(f'{where}: "{next(k for k in _EXTRA_KEYS if k in obj)}" needs the label names in "labels"',
                          hint='write {"labels": {"liver": 1}, "match": {"liver": ["(?i)^liver"]}}')  # fmt: skip
    match = obj.get("match", {})
    if not isinstance(match, dict) or not all(isinstance(v, list) for v in match.values()):
        raise ExportError(
            f'{where}: "match" must map label names to lists of patterns',
            hint='e.g. "match": {"liver": ["(?i)^liver$"]}',
        )
    priority, within = obj.get("priority", []), obj.get("within", {})
    if not isinstance(priority, list) or not all(isinstance(n, str) for n in priority):
        raise ExportError(f'{where}: "priority" must be a list of label names, painted first to last')
    if not isinstance(within, dict) or not all(isinstance(v, str) for v in within.values()):
        raise ExportError(f'{where}: "within" must map a label name to the label name it lies inside')
    return SegmentLabelTable(
        parse_label_map(base, where=where), {str(k): tuple(v) for k, v in match.items()}, obj.get("unmatched", "ignore"),
        obj.get("overlap", "reject"), tuple(priority), within, where,
    )  # fmt: skip


def read_segment_label_map(path: str | os.PathLike) -> SegmentLabelTable:
    """Read a label map file (``--label-map labels.json``; shape in the module docstring)."""
    return parse_segment_label_map(read_json(path, what="label map", invalid=ExportError), where="label map")


def segment_label_table(label_map) -> SegmentLabelTable | None:
    """The label map an export or a caller was given — a :class:`SegmentLabelTable`, its JSON
    dict or a label map file — as a table; ``None`` for none."""
    if label_map is None or isinstance(label_map, SegmentLabelTable):
        return label_map
    if isinstance(label_map, dict):
        return parse_segment_label_map(label_map)
    return read_segment_label_map(label_map)


# -- one segmentation -> one label map --------------------------------------------------------
@dataclass
class LabelReport:
    """What :func:`segmentation_to_label` made of one segmentation (the ``.labels.json`` sidecar).

    ``labels``: every label of the table but background, in value order -> ``{"value",
    "segments": [{"number", "name", "voxels"}] (the source structures it took), "voxels" (their
    union), "written" (voxels holding its value in the label map)}`` and, under ``regions``,
    ``"region"`` (the voxels of its region). ``background``: structures the table names
    background (left out); ``unmatched``: structures it does not name; ``overlaps``: ``{"labels":
    [a, b], "voxels"}`` for every pair of labels sharing voxels; ``overlap``: the policy applied.
    Names and numbers only: nothing else of the source object.
    """

    labels: dict[str, dict]
    background: list[dict]
    unmatched: list[dict]
    overlaps: list[dict]
    overlap: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"labels": self.labels, "background": self.background, "unmatched": self.unmatched,
                "overlaps": self.overlaps, "overlap": self.overlap, "warnings": self.warnings}  # fmt: skip


def _entry(segment: Segment) -> dict:
    return {"number": segment.number, "name": segment.name, "voxels": segment.voxels}


def _words(segments: list[Segment]) -> str:
    return ", ".join(f"{s.number} {s.name!r}" for s in segments)


def _union(segments: list[Segment]) -> tuple[tuple[int, ...], np.ndarray] | None:
    """The bounding box start (z, y, x) and mask of the union of some segments (``None`` if empty)."""
    full = [s for s in segments if not s.empty]
    if not full:
        return None
    lo = tuple(min(s.box[a] for s in full) for a in range(3))
    hi = tuple(max(s.box[a] + s.mask.shape[a] for s in full) for a in range(3))
    mask = np.zeros([h - low for low, h in zip(lo, hi, strict=True)], bool)
    for s in full:
        mask[tuple(slice(b - low, b - low + n) for b, low, n in zip(s.box, lo, s.mask.shape, strict=True))] |= s.mask
    return lo, mask


def _shared(a: tuple, b: tuple) -> int:
    """How many voxels two (start, mask) boxes share."""
    lo = [max(x, y) for x, y in zip(a[0], b[0], strict=True)]
    hi = [min(x + n, y + m) for x, n, y, m in zip(a[0], a[1].shape, b[0], b[1].shape, strict=True)]
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        return 0

    def cut(box):  # noqa: E306
        return box[1][tuple(slice(low - s, h - s) for low, h, s in zip(lo, hi, box[0], strict=True))]

    return int(np.count_nonzero(cut(a) & cut(b)))


def _order(table: SegmentLabelTable, names: list[str], overlap: str) -> list[str]:
    """The painting order: a later label overwrites an earlier one."""
    value = table.value
    if overlap == "priority":
        rank = {n: i for i, n in enumerate(table.priority)}
        return sorted(names, key=lambda n: (n in rank, rank.get(n, 0), value(n)))
    if overlap == "regions":
        return sorted(names, key=lambda n: (table._depth(n), value(n)))
    return sorted(names, key=value)


def segmentation_to_label(
    seg: Segmentation,
    table: SegmentLabelTable,
    *,
    overlap: str | None = None,
    unmatched: str | None = None,
) -> tuple[Volume, LabelReport]:
    """One label map of ``seg``'s structures, valued by ``table``, on ``seg.geometry`` (LPS).

    ``overlap`` and ``unmatched`` override the table's policies (module docstring). Returns a
    (z, y, x) uint8 label volume (uint16 when a value exceeds 255) and its :class:`LabelReport`.
    Raises :class:`~MedPrepLib.errors.LabelError` (the export quarantines the case) for an
    unmatched structure under ``unmatched="reject"``, overlapping labels the overlap policy
    refuses, and a structure two labels claim. Never modifies ``seg``.
    """
    overlap, unmatched = overlap or table.overlap, unmatched or table.unmatched
    if overlap not in OVERLAP_POLICIES:
        raise ExportError(f"unknown overlap policy {overlap!r} (known: {', '.join(OVERLAP_POLICIES)})")
    if unmatched not in UNMATCHED_POLICIES:
        raise ExportError(f"unknown unmatched policy {unmatched!r} (known: {', '.join(UNMATCHED_POLICIES)})")
    groups: dict[str, list[Segment]] = {n: [] for n in table.table.labels}
    strays: list[Segment] = []
    for segment in seg.segments:
        name = table.label_for(segment)
        (strays if name is None else groups[name]).append(segment)
    if strays and unmatched == "reject":
        raise LabelError(
            f"the {seg.kind} holds structures the label map does not name: {_words(strays)}",
            hint='add them to the "match" patterns of a label (or of "background" to leave them out), or let unmatched structures be ignored',
        )
    dropped = groups.pop("background")
    masks = {n: _union(segs) for n, segs in groups.items()}
    present = [n for n in groups if masks[n] is not None]
    overlaps = [
        (a, b, k) for i, a in enumerate(present) for b in present[i + 1 :] if (k := _shared(masks[a], masks[b]))
    ]
    refused = overlaps if overlap == "reject" else []
    if overlap == "regions":
        refused = [(a, b, k) for a, b, k in overlaps if not (table._inside(a, b) or table._inside(b, a))]
    if refused:
        pairs = "; ".join(
            f"{a!r} ({_words(groups[a])}) and {b!r} ({_words(groups[b])}) share {k} voxels" for a, b, k in refused
        )
        hint = (
            'declare which lies inside which ("within"), or use overlap priority'
            if overlap == "regions"
            else 'choose an overlap policy: "priority" (a declared order, later wins) or "regions" (nnU-Net region-based labels)'
        )
        raise LabelError(f"overlapping structures in the {seg.kind}: {pairs}", hint=hint)
    dtype = np.uint8 if max(table.table.values) <= np.iinfo(np.uint8).max else np.uint16
    label = np.zeros(seg.geometry.shape, dtype)
    for name in _order(table, present, overlap):
        start, mask = masks[name]
        label[tuple(slice(s, s + n) for s, n in zip(start, mask.shape, strict=True))][mask] = table.value(name)
    counts = np.bincount(label.reshape(-1), minlength=max(table.table.values) + 1)
    report = LabelReport({}, [_entry(s) for s in dropped], [_entry(s) for s in strays],
                         [{"labels": [a, b], "voxels": k} for a, b, k in overlaps], overlap)  # fmt: skip
    for name, segs in groups.items():
        value = table.value(name)
        entry = {"value": value, "segments": [_entry(s) for s in segs],
                 "voxels": 0 if masks[name] is None else int(np.count_nonzero(masks[name][1])), "written": int(counts[value])}  # fmt: skip
        if overlap == "regions":
            entry["region"] = int(counts[list(table.region(name))].sum())
        report.labels[name] = entry
        report.warnings += [f"segment {s.number} ({s.name!r}) of {name!r} is empty" for s in segs if s.empty]
    if strays:
        report.warnings.append(f"structures the label map does not name were left out: {_words(strays)}")
    return Volume(label, seg.geometry, metadata={"is_label": True}), report
