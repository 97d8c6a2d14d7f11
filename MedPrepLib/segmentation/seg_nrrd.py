"""Slicer segmentations (``.seg.nrrd``) as :class:`~.segments.Segmentation`, through ``slicerio``.

A ``.seg.nrrd`` holds one or more *layers* (a 3D NRRD is one layer; overlapping segments make a 4D
NRRD, ``kinds: list domain domain domain``, one labelmap per layer) and, per segment, the
``SegmentN_`` header fields ``Name``, ``Layer``, ``LabelValue``, ``Extent`` and the
``TerminologyEntry`` tag. A segment's voxels are those of its layer that hold its label value;
segments are taken by what the header says about each, never by their order in the file or by
their label values (Slicer numbers them 1, 2 ... per layer in the order they were made, so the
same organ has other values in other files). :mod:`.label_table` maps their names and terminology
to the dataset's values.

Numbers, names, terminology: :attr:`Segment.number` is the 1-based position of the segment in the
header (``Segment0_`` is 1); ``name`` is ``SegmentN_Name`` (the ID when there is no name);
``terminology`` is ``(category, type)`` — and ``typeModifier`` as a third entry when the entry has
one — each a (coding scheme, code value, code meaning) triple, e.g.
``(("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver"))``.

Frames: the NRRD's ``space`` may be ``left-posterior-superior`` (what Slicer writes) or
``right-anterior-superior``; slicerio turns either into an index-to-LPS matrix, which becomes the
segmentation's :class:`~MedPrepLib.geometry.Geometry` (LPS, mm; arrays (z, y, x)). Any other space
is refused.

Onto an image (``image`` given) — the grid rule:

1. **The same grid** (size, spacing and origin within
   :data:`~MedPrepLib.recipe.run.LABEL_GRID_TOLERANCE_MM` mm, direction within 1e-5): the segments
   take the image's grid exactly.
2. **A sub-box of the image grid**: the same spacing and direction, and an origin on a voxel
   centre of the image grid (within the same tolerance). Slicer crops a segmentation to the
   extent of its segments when it saves, so this is the usual case; the segments are placed at
   their offset. Voxels of a segment that fall outside the image are refused
   (:class:`~MedPrepLib.errors.LabelError` naming the segments and voxel counts), or cut off with
   a warning under ``grid_policy="resample"``.
3. **Any other grid** (another spacing, direction, or an origin between voxel centres): refused
   with ``grid_policy="reject"`` (the default, as the export's ``--label-grid``), a
   :class:`~MedPrepLib.errors.LabelError` saying how the grids differ; with ``"resample"`` each
   layer is resampled onto the image grid with nearest neighbour (so overlapping segments stay
   separate and no new label values appear), voxels outside the segmentation's field of view
   become background, a warning says so, and a segment that vanishes is warned about.

Without an image the segments stay on the segmentation's own grid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import ArgumentError, InputError, LabelError, MissingDependencyError
from ..geometry import Geometry
from ..recipe.run import LABEL_GRID_TOLERANCE_MM
from ..volume import Volume
from .segments import Segment, Segmentation

GRID_POLICIES = ("reject", "resample")
"""What :func:`read_seg_nrrd` does with a segmentation on a grid that is not (a sub-box of) the image's."""

DIRECTION_TOLERANCE = 1e-5
"""How far the segmentation's direction cosines may differ from the image's on the same grid."""

_SPACES = ("left-posterior-superior", "right-anterior-superior")


def _slicerio():
    try:
        import slicerio
    except ImportError as exc:
        raise MissingDependencyError(
            "reading Slicer segmentations (.seg.nrrd) needs the Python package 'slicerio', which is not installed",
            hint='pip install "medprep[labels]"',
        ) from exc
    return slicerio


def _read(path: str) -> dict:
    """slicerio's segmentation dict, once the raw header says the NRRD's space is one slicerio
    turns into LPS (it does not keep the space it converted from)."""
    slicerio = _slicerio()
    import nrrd  # pynrrd, a dependency of slicerio

    if not os.path.isfile(path):
        raise InputError("no such file", path=path, hint="give a Slicer segmentation file (.seg.nrrd)")
    try:
        header = nrrd.read_header(path)
    except (nrrd.NRRDError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"not a NRRD file ({exc})", path=path, hint="give a Slicer segmentation file (.seg.nrrd)"
        ) from None
    space = header.get("space")
    if space not in _SPACES:
        raise InputError(
            f"the NRRD's space is {space!r}; a segmentation needs 'left-posterior-superior' or 'right-anterior-superior'",
            path=path,
            hint="save the segmentation from Slicer (.seg.nrrd)",
        )
    try:
        return slicerio.read_segmentation(path)
    except (OSError, ValueError, KeyError, nrrd.NRRDError) as exc:
        raise InputError(f"cannot read the segmentation ({exc})", path=path) from None


def _layers(voxels: np.ndarray, path: str) -> list[np.ndarray]:
    """The labelmap of each layer as a (z, y, x) integer array (slicerio reads (i, j, k))."""
    if voxels.ndim == 3:
        stack = [voxels]
    elif voxels.ndim == 4:
        stack = list(voxels)
    else:
        raise InputError(
            f"the segmentation has {voxels.ndim} dimensions; a .seg.nrrd has 3 (or 4 with layers)", path=path
        )
    if voxels.dtype.kind not in "iub":
        raise InputError(f"the segmentation holds {voxels.dtype} voxels; Slicer writes integer labelmaps", path=path)
    return [np.ascontiguousarray(layer.transpose(2, 1, 0)) for layer in stack]


def _terminology(entry: dict | None) -> tuple[tuple[str, str, str], ...]:
    if not entry:
        return ()
    keys = ("category", "type", "typeModifier") if "typeModifier" in entry else ("category", "type")
    return tuple(tuple((list(entry.get(k, [])) + ["", "", ""])[:3]) for k in keys)


def _placement(seg: Geometry, image: Geometry) -> tuple[int, int, int] | None:
    """The (z, y, x) index in the image grid of the segmentation's first voxel, when the
    segmentation's grid is the image grid shifted by whole voxels; else ``None``."""
    if not np.allclose(seg.spacing, image.spacing, rtol=0, atol=LABEL_GRID_TOLERANCE_MM):
        return None
    if not np.allclose(seg.direction, image.direction, rtol=0, atol=DIRECTION_TOLERANCE):
        return None
    index = image.physical_to_index(seg.origin)
    whole = np.round(index)
    if np.linalg.norm(image.matrix @ (index - whole)) > LABEL_GRID_TOLERANCE_MM:
        return None
    return tuple(int(v) for v in whole[::-1])


def _boxes(layer: np.ndarray) -> list:
    """The bounding box (slices, or ``None``) of every positive value of a layer, indexed by value - 1."""
    from scipy import ndimage

    if not layer.size or layer.max() <= 0:
        return []
    values = layer.astype(np.int64) if layer.dtype.kind == "b" or layer.dtype.itemsize > 4 else layer
    return ndimage.find_objects(np.maximum(values, 0) if values.dtype.kind == "i" else values)


def _segment(
    number: int, info: dict, layer: np.ndarray, boxes: list, offset, shape, terminology
) -> tuple[Segment, int]:
    """One segment placed at ``offset`` (z, y, x) in a grid of ``shape``, and how many of its
    voxels fell outside that grid (cut off)."""
    name = str(info.get("name", info.get("id", f"Segment_{number}")))
    value = int(info.get("labelValue", 1))
    box = boxes[value - 1] if 0 < value <= len(boxes) else None
    empty = Segment(number, name, (0, 0, 0), np.zeros((0, 0, 0), bool), terminology=terminology,
                    warnings=(f"segment {number} ({name!r}) is empty",))  # fmt: skip
    if box is None:
        return empty, 0
    mask = layer[box] == value
    start = [s.start + o for s, o in zip(box, offset, strict=True)]
    lo = [min(max(0, a), n) for a, n in zip(start, shape, strict=True)]
    hi = [max(min(n, s.stop + o), a) for s, o, n, a in zip(box, offset, shape, lo, strict=True)]
    inside = mask[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))]
    kept = int(np.count_nonzero(inside))
    if not kept:
        return empty, int(np.count_nonzero(mask))
    segment = Segment(number, name, tuple(lo), np.ascontiguousarray(inside), terminology=terminology)
    return segment, int(np.count_nonzero(mask)) - kept


def read_seg_nrrd(
    path: str | os.PathLike,
    image: Volume | Geometry | None = None,
    *,
    grid_policy: str = "reject",
    threads: int | None = None,
) -> Segmentation:
    """The segments of a Slicer ``.seg.nrrd``, on ``image``'s grid (or their own without one).

    ``image``: the image the segmentation belongs to, as a :class:`~MedPrepLib.volume.Volume`
    or its :class:`~MedPrepLib.geometry.Geometry` (LPS). ``grid_policy``: ``"reject"`` or
    ``"resample"`` (see the module docstring for the grid rule). Returns a
    :class:`~.segments.Segmentation` of kind ``"seg.nrrd"`` with one :class:`~.segments.Segment`
    per segment of the file, in header order, overlapping segments kept apart.

    Raises :class:`~MedPrepLib.errors.MissingDependencyError` without slicerio,
    :class:`~MedPrepLib.errors.InputError` for a file that is not a Slicer segmentation, and
    :class:`~MedPrepLib.errors.LabelError` for a grid the policy refuses.
    """
    if grid_policy not in GRID_POLICIES:
        raise ArgumentError(f"unknown segmentation grid policy {grid_policy!r} (known: {', '.join(GRID_POLICIES)})")
    path = os.fspath(path)
    data = _read(path)
    layers = _layers(np.asarray(data["voxels"]), path)
    own = Geometry.from_affine_lps(np.asarray(data["ijkToLPS"], float), layers[0].shape[::-1])
    infos: Sequence[dict] = data.get("segments") or []
    warnings: list[str] = []
    if not infos and any(layer.any() for layer in layers):
        raise InputError(
            "the NRRD holds a label map but no segments (no SegmentN_ fields): it is not a Slicer segmentation",
            path=path,
            hint="use it as a label file, or save it from Slicer as a segmentation (.seg.nrrd)",
        )
    target = own if image is None else (image.geometry if isinstance(image, Volume) else image)
    offset = (0, 0, 0)
    if image is not None:
        same = own == target or own.isclose(target, atol_mm=LABEL_GRID_TOLERANCE_MM, atol_dir=DIRECTION_TOLERANCE)
        placed = (0, 0, 0) if same else _placement(own, target)
        if placed is None:
            layers = _onto(layers, own, target, grid_policy, threads, path)
            warnings.append(
                "the segmentation was resampled onto its image's grid (nearest neighbour): " + _difference(own, target)
            )
        else:
            offset = placed
    segments, outside = _segments(infos, layers, offset, target.shape, warnings)
    if outside:
        words = ", ".join(f"{n} ({name!r}): {v} voxels" for n, name, v in outside)
        if grid_policy == "reject":
            raise LabelError(
                f"segments reach outside their image's grid: {words}",
                path=path,
                hint="the segmentation was drawn on another image; or let labels be cut to the image (grid policy 'resample')",
            )
        warnings.append(f"segment voxels outside the image were cut off: {words}")
    return Segmentation(target, "seg.nrrd", segments, warnings)


def _segments(infos, layers, offset, shape, warnings) -> tuple[list[Segment], list]:
    boxes = [_boxes(layer) for layer in layers]
    segments, outside, claimed = [], [], set()
    for number, info in enumerate(infos, start=1):
        layer_index = int(info.get("layer", 0))
        if not 0 <= layer_index < len(layers):
            raise InputError(
                f"segment {number} ({info.get('name')!r}) is in layer {layer_index}; the file has {len(layers)}"
            )
        key = (layer_index, int(info.get("labelValue", 1)))
        if key in claimed:
            warnings.append(
                f"segment {number} ({info.get('name')!r}) shares layer {key[0]} value {key[1]} with another segment"
            )
        claimed.add(key)
        segment, lost = _segment(number, info, layers[layer_index], boxes[layer_index], offset, shape,
                                 _terminology(info.get("terminology")))  # fmt: skip
        if lost:
            outside.append((number, segment.name, lost))
        segments.append(segment)
    for index, layer_boxes in enumerate(boxes):
        stray = [v for v, box in enumerate(layer_boxes, start=1) if box is not None and (index, v) not in claimed]
        if stray:
            warnings.append(
                f"layer {index} holds value(s) {', '.join(map(str, stray[:8]))} that no segment names (ignored)"
            )
    return segments, outside


def _onto(layers, own: Geometry, target: Geometry, grid_policy: str, threads, path) -> list[np.ndarray]:
    if grid_policy == "reject":
        raise LabelError(
            "the segmentation is not on its image's grid, nor a box of it: " + _difference(own, target),
            path=path,
            hint="export the segmentation from Slicer with the image as reference geometry, "
            "or let labels be resampled onto their images (grid policy 'resample')",
        )
    from ..processing.resample import resample

    out = []
    for layer in layers:
        moved = resample(
            Volume(layer, own, metadata={"is_label": True}),
            target,
            interpolation="nearest",
            fill_value=0,
            threads=threads,
        )
        out.append(np.ascontiguousarray(moved.array))
    return out


def _difference(own: Geometry, target: Geometry) -> str:
    from ..export.labels import describe_grid_difference

    return describe_grid_difference(own, target).replace("the label", "the segmentation")
