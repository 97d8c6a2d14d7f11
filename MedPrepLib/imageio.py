"""Reading and writing image files (NIfTI, NRRD, MetaImage, Analyze, MINC) through SimpleITK.

Formats, by file name ending:

=================  ======  =======  ============================================
ending             read    write    notes
=================  ======  =======  ============================================
``.nii .nii.gz``   yes     yes      qform/sform disagreement is reported
``.nrrd .nhdr``    yes     yes
``.mha``           yes     yes
``.mhd`` (+ raw)   yes     yes      header and data file written together
``.hdr/.img``      yes     no       Analyze 7.5 / NIfTI pair
``.mnc``           yes     no       MINC
=================  ======  =======  ============================================

Geometry is SimpleITK's, in LPS; the returned :class:`~MedPrepLib.volume.Volume` array is
(z, y, x). A 4D file (NIfTI time series) becomes a multi-channel volume (z, y, x, t); a 2D file
becomes a one-slice volume.

Writing never overwrites an existing file unless ``overwrite=True``, and always goes through a
temporary name in the destination folder followed by an atomic rename, so a crash never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .atomic import check_writable
from .errors import InputError, InvalidImageError
from .geometry import Geometry
from .volume import Volume

log = logging.getLogger(__name__)

READ_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".mnc")
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""Every format :func:`write_image` writes — the one list; other lists of output formats filter it."""


def image_suffix(path: str | os.PathLike) -> str:
    """The format ending of a file name, lower case, with ``.nii.gz`` as one ending."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def path_beside(path: str | os.PathLike, ending: str) -> Path:
    """The file beside an image that shares its stem: ``out/ct.nii.gz`` + ``".provenance.json"``
    -> ``out/ct.provenance.json`` (the format ending, however many dots, is replaced)."""
    path = Path(path)
    suffix = image_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    return path.with_name(stem + ending)


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the name ends in a format :func:`read_image` reads."""
    return image_suffix(path) in READ_SUFFIXES


def _companion_files(path: Path) -> list[Path]:
    """Files written together with ``path`` (the data file of a MetaImage / detached NRRD)."""
    suffix = image_suffix(path)
    stem = path.name[: -len(suffix)]
    if suffix == ".mhd":
        return [path.with_name(stem + ".raw"), path.with_name(stem + ".zraw")]
    if suffix == ".nhdr":
        return [path.with_name(stem + ".raw"), path.with_name(stem + ".raw.gz")]
    return []


ONE_FILE_WRITE_SUFFIXES = tuple(s for s in WRITE_SUFFIXES if not _companion_files(Path("image" + s)))
"""The writable formats that are one file (not a detached ``.nhdr`` / ``.mhd`` header with its data file)."""


def read_image(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> Volume:
    """Read an image file into a :class:`Volume` (LPS geometry, (z, y, x[, c]) array).

    Raises :class:`InputError` for a missing or unreadable file and :class:`InvalidImageError`
    when voxels are NaN or infinite (unless ``allow_nonfinite``). Warnings found while reading
    (for example a NIfTI whose qform and sform disagree) are logged and listed in
    ``volume.metadata["warnings"]``.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        raise InputError("is a folder, not an image file", path=path, hint="for a DICOM folder use the DICOM reader")
    suffix = image_suffix(path)
    if suffix not in READ_SUFFIXES:
        raise InputError(
            f"unknown image format '{suffix or path.name}'",
            path=path,
            hint="readable: " + ", ".join(READ_SUFFIXES),
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise InputError(f"cannot read image: {detail}", path=path) from exc

    warnings: list[str] = []
    volume = _volume_from_any_dimension(image, path)
    if suffix in (".nii", ".nii.gz"):
        warnings += _check_nifti_transforms(path, volume.geometry)
    if np.issubdtype(volume.dtype, np.floating):
        bad = volume.array.size - int(np.count_nonzero(np.isfinite(volume.array)))
        if suffix in (".nii", ".nii.gz"):
            from .nifti_header import count_nonfinite_voxels, read_float_nifti_values

            nifti_bad = count_nonfinite_voxels(path)  # ITK reads NaN as 0: look at the stored values
            if nifti_bad and allow_nonfinite:
                values = read_float_nifti_values(path)
                if values is not None and values.ndim == 4:
                    values = np.moveaxis(values, 0, -1)
                if values is not None and values.shape == volume.shape:
                    volume = volume.with_array(values.astype(volume.dtype, copy=False))
            bad = max(bad, nifti_bad)
        if bad and not allow_nonfinite:
            raise InvalidImageError(
                f"{bad} voxel(s) are NaN or infinite",
                path=path,
                hint="fix the file, or allow them explicitly (allow_nonfinite=True / --allow-nonfinite)",
            )
    for w in warnings:
        log.warning("%s: %s", path, w)
    volume.metadata["warnings"] = warnings
    volume.metadata["source_format"] = suffix
    return volume


def _volume_from_any_dimension(image, path: Path) -> Volume:
    """2D -> one slice, 3D as is, 4D -> channels last (z, y, x, t)."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 3:
        return Volume.from_sitk(image)
    if dim == 2:
        image = sitk.JoinSeries(image)
        return Volume.from_sitk(image)
    if dim == 4:
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidImageError("4D images with vector voxels are not supported", path=path)
        size = image.GetSize()
        direction4 = np.array(image.GetDirection()).reshape(4, 4)
        geometry = Geometry(
            size=size[:3],
            spacing=image.GetSpacing()[:3],
            origin=image.GetOrigin()[:3],
            direction=direction4[:3, :3],
        )
        array = np.moveaxis(sitk.GetArrayFromImage(image), 0, -1)  # (t, z, y, x) -> (z, y, x, t)
        # the 4th spacing (NIfTI pixdim[4], e.g. the repetition time) goes back out on writing
        metadata = {"channel_axis": "time", "time_spacing": float(image.GetSpacing()[3])}
        return Volume(np.ascontiguousarray(array), geometry, metadata=metadata)
    raise InvalidImageError(f"{dim}D images are not supported (2D, 3D or 4D only)", path=path)


def _check_nifti_transforms(path: Path, geometry: Geometry) -> list[str]:
    from .nifti_header import read_nifti_transforms

    transforms = read_nifti_transforms(path)
    if transforms is None or not transforms.disagree():
        return []
    rot, mm = transforms.disagreement()
    used_ras = geometry.affine_ras()
    used = "sform" if np.allclose(used_ras, transforms.sform, atol=1e-3) else (
        "qform" if np.allclose(used_ras, transforms.qform, atol=1e-3) else "neither"
    )
    return [
        f"NIfTI qform (code {transforms.qform_code}) and sform (code {transforms.sform_code}) disagree "
        f"by up to {mm:.3g} mm in translation and {rot:.3g} in rotation/zoom; the {used} was used"
    ]


def check_image_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output whose format cannot be written, whose folder is missing,
    or that exists (unless ``overwrite``)."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(
            f"cannot write format '{suffix or path.name}'", path=path, hint="writable: " + ", ".join(WRITE_SUFFIXES)
        )
    check_writable(path, overwrite=overwrite)
    return path


def write_image(
    volume: Volume,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    compress: bool | None = None,
    progress=None,
    hasher=None,
) -> Path:
    """Write ``volume`` to ``path`` atomically; returns the path. ``hasher``: see
    :func:`~MedPrepLib.imagewriter.write_volume_file` (one-file formats: it sees every byte).

    ``compress`` defaults to True for ``.nii.gz`` and NRRD/MetaImage (lossless zlib) and
    is ignored for ``.nii``. A multi-channel (z, y, x, c) volume becomes a 4D NIfTI (x, y, z, t)
    or a vector NRRD/MetaImage. Raises :class:`OutputExistsError` if the file (or, for ``.mhd``,
    its data file) exists and ``overwrite`` is False.
    """
    from .imagewriter import write_volume_file

    path = check_image_output(path, overwrite=overwrite)
    suffix = image_suffix(path)
    for companion in _companion_files(path):
        check_writable(companion, overwrite=overwrite)
    if compress is None:
        compress = suffix != ".nii"
    time_spacing = float(volume.metadata.get("time_spacing") or 1.0)
    return write_volume_file(
        volume, path, suffix, compress=bool(compress), time_spacing=time_spacing, progress=progress, hasher=hasher
    )
