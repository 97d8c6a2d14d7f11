"""What discovery hands to loading: per-file header facts and the image stacks built from them.

The flow is one way::

    files --read_header()--> FileHeader --group_stacks()--> Stack --load_stack()--> Volume
             (header.py)                   (group.py)                 (load.py)

Everything here is header-only (no pixel data), JSON-serialisable (``to_dict``/``from_dict``,
used by the scan cache) and free of patient identity: no patient name, ID or birth date is
ever copied into these objects.

Coordinates are DICOM's: ``position`` is ImagePositionPatient (mm, LPS, centre of the first
transmitted pixel), ``orientation`` is ImageOrientationPatient (row direction cosines then
column direction cosines, LPS), ``pixel_spacing`` is PixelSpacing as DICOM orders it:
(row spacing = distance between rows, column spacing = distance between columns), in mm.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

# Reason codes for files and stacks that are excluded. Each skip carries one of these plus
# a human sentence; nothing is dropped silently.
SKIP_REASONS = {
    "empty": "empty file (0 bytes)",
    "not_dicom": "not a DICOM file",
    "dicomdir": "DICOMDIR index file (not an image)",
    "truncated": "file is shorter than its declared pixel data",
    "no_pixel_data": "DICOM object without pixel data",
    "duplicate_sop_instance": "same SOPInstanceUID as another file",
    "not_a_volume": "images at one position with nothing that orders them in time (not a volume)",
    "localizer": "localizer / scout image",
    "secondary_capture": "secondary capture or screen save (dose report, annotated screenshot)",
    "colour": "colour image in a scalar pipeline",
    "non_image": "non-image object (structured report, RT plan, presentation state, ...)",
    "label_source": "segmentation or RT structure set (a label source, not an image)",
    "unreadable": "DICOM file that cannot be parsed",
}


@dataclass(frozen=True)
class FrameGeometry:
    """Geometry of one 2D frame (a slice): its own position, orientation and pixel spacing.

    For a single-frame file this is the file's own header; for an enhanced multi-frame file
    one entry per frame from the shared and per-frame functional groups; for a Siemens mosaic
    one entry per tile (slice), computed from the mosaic header.
    """

    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    frame_index: int = 0  # 0-based frame number in the file (tile number for a mosaic)
    # Keys telling frames at one position apart (4D): None when absent.
    temporal_key: float | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    echo_key: float | None = None  # effective echo time (ms) of an enhanced MR frame
    slice_thickness: float | None = None  # mm, from the frame's pixel measures
    stack_key: str | None = None  # StackID of an enhanced frame: frames of different stacks never mix
    # Which diffusion weighting (b-value and gradient direction) an enhanced MR frame holds,
    # numbered 0, 1, ... in the order the file first lists each: separates DWI volumes.
    diffusion_key: float | None = None


@dataclass
class FileHeader:
    """Header-only facts of one DICOM file, as needed to group, select and load it."""

    path: str
    size_bytes: int = 0
    mtime_ns: int = 0
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    image_type: tuple[str, ...] = ()
    transfer_syntax_uid: str = ""
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric_interpretation: str = ""
    bits_allocated: int = 0
    bits_stored: int = 0
    pixel_representation: int = 0
    instance_number: int | None = None
    echo_number: int | None = None
    echo_time: float | None = None
    acquisition_number: int | None = None
    temporal_position: int | None = None
    trigger_time: float | None = None
    acquisition_time: str = ""
    slice_thickness: float | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    pixel_padding_value: float | None = None
    window_center: tuple[float, ...] = ()
    window_width: tuple[float, ...] = ()
    is_mosaic: bool = False
    is_multiframe: bool = False
    frames: tuple[FrameGeometry, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["frames"] = [dataclasses.asdict(f) for f in self.frames]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FileHeader:
        d = dict(d)
        frames = tuple(
            FrameGeometry(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in f.items()})
            for f in d.pop("frames", ())
        )
        for key in ("image_type", "window_center", "window_width"):
            d[key] = tuple(d.get(key) or ())
        return cls(frames=frames, **d)


@dataclass(frozen=True)
class Skipped:
    """A file (or a whole stack) left out, with a reason code from SKIP_REASONS and details."""

    path: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass
class Stack:
    """A set of files that form one image volume (3D, or 4D when ``n_timepoints`` > 1).

    ``id`` is stable between runs: a short hash of the SeriesInstanceUID and the split key.
    ``split_key`` says what told this stack apart from its siblings in the same series
    (orientation, image size, echo, ...). ``headers`` keep discovery order; the loader sorts
    slices geometrically (never by file name or InstanceNumber).
    """

    id: str
    series_instance_uid: str
    modality: str
    headers: list[FileHeader]
    split_key: dict[str, Any] = field(default_factory=dict)
    n_timepoints: int = 1
    series_description: str = ""
    series_number: int | None = None
    warnings: list[str] = field(default_factory=list)
    # Name of the header key that orders the time points of a 4D stack (see group.TEMPORAL_KEYS);
    # None for a 3D stack.
    temporal_key: str | None = None
    # For multi-frame files of which only some frames belong to this stack (an enhanced file
    # holding several orientations or echoes): path -> 0-based frame indices. None = all frames.
    frame_selection: dict[str, tuple[int, ...]] | None = None

    @property
    def paths(self) -> list[str]:
        return [h.path for h in self.headers]

    @property
    def kind(self) -> str:
        """'mosaic', 'multiframe' or 'single' (one frame per file)."""
        if any(h.is_mosaic for h in self.headers):
            return "mosaic"
        if any(h.is_multiframe for h in self.headers):
            return "multiframe"
        return "single"


def stack_id(series_instance_uid: str, split_key: dict[str, Any]) -> str:
    """Stable, short identifier of a stack (no patient information; UIDs are hashed).

    >>> stack_id("1.2.3", {}) == stack_id("1.2.3", {})
    True
    """
    text = series_instance_uid + "|" + "|".join(f"{k}={split_key[k]}" for k in sorted(split_key))
    return "s" + hashlib.sha1(text.encode()).hexdigest()[:10]
