"""Enhanced multi-frame DICOM (enhanced CT/MR, ...): per-frame geometry from functional groups.

An enhanced object keeps what all frames share in the Shared Functional Groups Sequence
(5200,9229) and what varies in the Per-Frame Functional Groups Sequence (5200,9230), one item
per frame. Geometry lives in the Plane Position (ImagePositionPatient, LPS mm), Plane
Orientation (ImageOrientationPatient) and Pixel Measures (PixelSpacing, mm, DICOM row/column
order) macros; the Modality LUT in Pixel Value Transformation. A frame without position or
orientation keeps ``None`` there, so that loading refuses it — an identity affine is never made up.
"""

from __future__ import annotations

from .stack import FrameGeometry


def _first_item(group, keyword: str):
    if group is None:
        return None
    seq = group.get(keyword)
    if not seq:
        return None
    return seq[0]


def _lookup(per_frame, shared, macro: str, attribute: str):
    """Attribute of a functional-group macro: per-frame first, then shared."""
    for group in (per_frame, shared):
        item = _first_item(group, macro)
        if item is not None:
            value = item.get(attribute)
            if value is not None and value != "":
                return value
    return None


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == n else None


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def is_enhanced(ds) -> bool:
    """True when the dataset carries functional groups (an enhanced multi-frame object)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def enhanced_frames(ds) -> tuple[FrameGeometry, ...]:
    """One :class:`FrameGeometry` per frame of an enhanced multi-frame dataset.

    ``temporal_key`` is the TemporalPositionIndex, else the cardiac TriggerDelayTime (ms);
    ``echo_key`` the EffectiveEchoTime (ms); ``stack_key`` the StackID (a file may hold
    several stacks, e.g. two slabs or two overlapping blocks of slices); ``diffusion_key``
    numbers the distinct diffusion weightings (b-value, gradient direction) in frame order.
    """
    n = int(ds.get("NumberOfFrames") or 1)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    weightings: dict[tuple, int] = {}
    for k in range(n):
        pf = per_frame_seq[k] if k < len(per_frame_seq) else None
        position = _floats(_lookup(pf, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(_lookup(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(_lookup(pf, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thickness = _float(_lookup(pf, shared, "PixelMeasuresSequence", "SliceThickness"))
        slope = _float(_lookup(pf, shared, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(_lookup(pf, shared, "PixelValueTransformationSequence", "RescaleIntercept"))
        temporal = _float(_lookup(pf, shared, "FrameContentSequence", "TemporalPositionIndex"))
        if temporal is None:
            temporal = _float(_lookup(pf, shared, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        echo = _float(_lookup(pf, shared, "MREchoSequence", "EffectiveEchoTime"))
        stack = _lookup(pf, shared, "FrameContentSequence", "StackID")
        weighting = _diffusion(pf, shared)
        diffusion = None if weighting is None else float(weightings.setdefault(weighting, len(weightings)))
        frames.append(
            FrameGeometry(
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                frame_index=k,
                temporal_key=temporal,
                rescale_slope=slope,
                rescale_intercept=intercept,
                echo_key=echo,
                slice_thickness=thickness,
                stack_key=None if stack is None else str(stack).strip(),
                diffusion_key=diffusion,
            )
        )
    return tuple(frames)


def _diffusion(per_frame, shared) -> tuple | None:
    """(b-value s/mm2, gradient direction, directionality) of a frame's MR Diffusion macro, or None."""
    for group in (per_frame, shared):
        item = _first_item(group, "MRDiffusionSequence")
        if item is None:
            continue
        b = _float(item.get("DiffusionBValue"))
        direction = _floats(
            _lookup(item, None, "DiffusionGradientDirectionSequence", "DiffusionGradientOrientation"), 3
        )
        directionality = str(item.get("DiffusionDirectionality") or "").strip().upper()
        if b is None and direction is None:
            return None
        return (
            None if b is None else round(b, 3),
            None if direction is None else tuple(round(v, 4) for v in direction),
            directionality,
        )
    return None


def frame_types(ds) -> tuple[str, ...]:
    """The FrameType values of the shared group (or of the first frame), upper case."""
    for seq_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if seq:
            value = _lookup(seq[0], None, "MRImageFrameTypeSequence", "FrameType") or _lookup(
                seq[0], None, "CTImageFrameTypeSequence", "FrameType"
            )
            if value:
                return tuple(str(v).upper() for v in (value if not isinstance(value, str) else [value]))
    return ()
