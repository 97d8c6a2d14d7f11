"""Any segmentation object onto its image: which reader a file needs, and the one call that uses it.

* a file ending in ``.seg.nrrd`` is a Slicer segmentation (:mod:`.seg_nrrd`);
* a DICOM file of SOP class Segmentation Storage or Label Map Segmentation Storage is a DICOM SEG
  (:mod:`.dicom_seg`);
* a DICOM file of SOP class RT Structure Set Storage is an RTSTRUCT (:mod:`.rtstruct`).

:func:`read_on_image` places an object on an image as MedPrep's loader gives it (the grid of
``sources.load_path``, its gap and tilt policy included) and :func:`segment_names` reads just the
structure names, header only, for a dataset's label table.
"""

from __future__ import annotations

import os

from ..errors import InputError, UnsupportedDicomError
from ..volume import Volume
from .segments import Segmentation

SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
KINDS = ("SEG", "RTSTRUCT", "seg.nrrd")
SEG_NRRD_SUFFIX = ".seg.nrrd"
"""The ending of a Slicer segmentation file (any case)."""


def is_seg_nrrd(name: str | os.PathLike) -> bool:
    """Whether a file name ends in ``.seg.nrrd`` (any case): a Slicer segmentation, never an image."""
    return os.fspath(name).lower().endswith(SEG_NRRD_SUFFIX)


def _header(path: str):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except FileNotFoundError:
        raise InputError("the segmentation object does not exist", detail=path) from None
    except Exception as exc:  # noqa: BLE001 - anything unreadable is "not a segmentation object"
        raise UnsupportedDicomError(
            "not a segmentation object: neither a .seg.nrrd nor a readable DICOM file",
            hint="give a DICOM SEG, an RTSTRUCT or a Slicer .seg.nrrd",
            detail=f"{path}: {exc}",
        ) from None


def segmentation_kind(path: str | os.PathLike) -> str:
    """``"SEG"``, ``"RTSTRUCT"`` or ``"seg.nrrd"`` (see the module doc); a typed error otherwise."""
    path = os.fspath(path)
    if is_seg_nrrd(path):
        if not os.path.isfile(path):
            raise InputError("the segmentation object does not exist", detail=path)
        return "seg.nrrd"
    sop_class = str(_header(path).get("SOPClassUID", ""))
    if sop_class in SEG_SOP_CLASSES:
        return "SEG"
    if sop_class == RTSTRUCT_SOP_CLASS:
        return "RTSTRUCT"
    raise UnsupportedDicomError(
        "not a segmentation object (the DICOM file is neither a SEG nor an RTSTRUCT)",
        hint="give a DICOM SEG, an RTSTRUCT or a Slicer .seg.nrrd",
        detail=path,
    )


def read_on_image(path: str | os.PathLike, image: Volume, *, frame_of_reference_uid: str | None = None,
                  grid_policy: str = "reject") -> Segmentation:  # fmt: skip
    """The structures of the object at ``path`` as segments on ``image``'s grid (LPS).

    ``frame_of_reference_uid``: the image's, checked against a SEG's (default: the image's
    metadata). ``grid_policy`` concerns a ``.seg.nrrd`` on another grid ("reject" or "resample").
    """
    kind = segmentation_kind(path)
    if kind == "SEG":
        from .dicom_seg import read_seg

        return read_seg(path, image, frame_of_reference_uid=frame_of_reference_uid)
    if kind == "RTSTRUCT":
        from .rtstruct import read_rtstruct

        return read_rtstruct(path, image)
    from .seg_nrrd import read_seg_nrrd

    return read_seg_nrrd(path, image, grid_policy=grid_policy)


def read_on_series(path: str | os.PathLike, series_path: str | os.PathLike, *, series: str | None = None,
                   geometry_policy: str = "resample", grid_policy: str = "reject") -> tuple[Volume, Segmentation]:  # fmt: skip
    """Load the image (a DICOM series or an image file) with MedPrep's loader and place the
    object on it: ``(image, segmentation)``."""
    kind = segmentation_kind(path)
    if kind == "SEG":
        from .dicom_seg import read_seg_on_series

        return read_seg_on_series(path, series_path, series=series, geometry_policy=geometry_policy)
    if kind == "RTSTRUCT":
        from .rtstruct import read_rtstruct_on_series

        return read_rtstruct_on_series(path, series_path, series, geometry_policy=geometry_policy)
    from ..sources import load_path

    image = load_path(series_path, series, geometry_policy=geometry_policy)
    return image, read_on_image(path, image, grid_policy=grid_policy)


def segment_names(path: str | os.PathLike) -> list[str]:
    """The structure names an object declares (SegmentLabel, ROIName, Slicer segment names), in
    its order, without reading pixels or contours."""
    kind = segmentation_kind(path)
    if kind == "seg.nrrd":
        from .seg_nrrd import _slicerio

        slicerio = _slicerio()
        import nrrd  # pynrrd, a dependency of slicerio

        try:
            data = slicerio.read_segmentation(os.fspath(path), skip_voxels=True)
        except (OSError, ValueError, KeyError, UnicodeDecodeError, nrrd.NRRDError) as exc:
            raise InputError(f"cannot read the segmentation's header ({exc})", path=os.fspath(path),
                             hint="save the segmentation from Slicer (.seg.nrrd)") from None  # fmt: skip
        return [str(s.get("name", "")) for s in data.get("segments") or []]
    ds = _header(os.fspath(path))
    if kind == "SEG":
        return [str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence") or []]
    return [str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence") or []]
