"""Every case of the real DICOM corpus (../shared/corpus) is right by its compare_mode.

The comparison follows the corpus README's recipe: both volumes as (array, RAS affine),
brought to the closest canonical orientation with nibabel (permutations and flips only),
then equal shapes, voxels exact (integers) or within 1e-3 (floats), direction columns within
1e-4, spacing / origin / far corner within 1e-3 mm (0.01 mm for oblique grids), and the
tool-independent check that every file's ImagePositionPatient lands on an integer voxel.

Cases are parametrized from MANIFEST.tsv rows, so a new case is covered automatically; the
code is generic by compare_mode, never per file. Padding is not masked by the loader, so
voxels are compared everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import corpus_case_dir, corpus_cases

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

from MedPrepLib.dicom.load import load_stack  # noqa: E402
from MedPrepLib.dicom.scan import scan_files  # noqa: E402
from MedPrepLib.errors import GeometryError  # noqa: E402
from MedPrepLib.sources import load_files, load_path  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.pydicom_dependent]

CASES = corpus_cases()
LPS_TO_RAS4 = np.diag([-1.0, -1.0, 1.0, 1.0])


def _mode(case: dict) -> str:
    mode = case["compare_mode"].strip().lower()
    for name in ("exact", "tilt", "gap", "mosaic", "split", "single slice"):
        if mode.startswith(name):
            return name
    raise AssertionError(f"unknown compare_mode {case['compare_mode']!r}")


# ------------------------------------------------------------------------- helpers
def canonical(array_xyz: np.ndarray, affine_ras: np.ndarray):
    img = nib.as_closest_canonical(nib.Nifti1Image(array_xyz, affine_ras))
    return np.asanyarray(img.dataobj), img.affine


def ours_canonical(volume, affine_lps=None):
    a = volume.array
    arr = np.transpose(a, (2, 1, 0, 3)) if a.ndim == 4 else np.transpose(a, (2, 1, 0))
    affine = np.asarray(affine_lps if affine_lps is not None else volume.geometry.affine_lps(), float)
    return canonical(np.ascontiguousarray(arr), LPS_TO_RAS4 @ affine)


def reference_canonical(path):
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return canonical(data, img.affine)


def assert_voxels_equal(ours: np.ndarray, ref: np.ndarray, what: str):
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    if np.issubdtype(ours.dtype, np.integer) and np.issubdtype(ref.dtype, np.integer):
        diff = np.count_nonzero(ours.astype(np.int64) != ref.astype(np.int64))
        assert diff == 0, f"{what}: {diff} voxels differ"
    else:
        np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=1e-6, atol=1e-3, err_msg=what)


def assert_affines_match(ours: np.ndarray, ref: np.ndarray, shape, what: str, *, in_plane_only=False):
    m_o, m_r = ours[:3, :3], ref[:3, :3]
    sp_o, sp_r = np.linalg.norm(m_o, axis=0), np.linalg.norm(m_r, axis=0)
    axes = [0, 1] if in_plane_only else [0, 1, 2]
    np.testing.assert_allclose((m_o / sp_o)[:, axes], (m_r / sp_r)[:, axes], atol=1e-4, err_msg=f"{what}: direction")
    oblique = not np.allclose(np.abs(m_r / sp_r).max(axis=0), 1.0, atol=1e-6)
    tol = 0.01 if oblique else 1e-3
    np.testing.assert_allclose(sp_o[axes], sp_r[axes], atol=1e-3, err_msg=f"{what}: spacing")
    np.testing.assert_allclose(ours[:3, 3], ref[:3, 3], atol=tol, err_msg=f"{what}: origin")
    far = np.array([*(np.array(shape[:3]) - 1), 1.0])
    if in_plane_only:
        far[2] = 0
    np.testing.assert_allclose((ours @ far)[:3], (ref @ far)[:3], atol=tol, err_msg=f"{what}: far corner")


def file_positions(paths) -> list[np.ndarray]:
    """ImagePositionPatient of every file (every frame of an enhanced file), read with pydicom."""
    out = []
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        if "ImagePositionPatient" in ds:
            out.append(np.array([float(v) for v in ds.ImagePositionPatient]))
        for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
            out.append(np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]))
    return out


def assert_positions_on_grid(affine_lps: np.ndarray, positions, what: str, *, in_plane_only=False):
    inv = np.linalg.inv(affine_lps)
    for p in positions:
        idx = (inv @ np.append(p, 1.0))[:3]
        if in_plane_only:
            idx[2] = round(idx[2])
        back = (affine_lps @ np.append(np.round(idx), 1.0))[:3]
        assert np.linalg.norm(back - p) <= 1e-3, (
            f"{what}: position {p} is {np.linalg.norm(back - p):.4f} mm off the grid"
        )


def correlation_on_reference_grid(volume, ref_path) -> tuple[float, float]:
    """Sample our (regular) volume at every reference voxel centre (physical space, linear);
    return (Pearson correlation over the voxels inside both fields of view, fraction inside)."""
    from scipy import ndimage

    img = nib.load(str(ref_path))
    ref = np.asanyarray(img.dataobj).astype(np.float64)
    ijk = np.indices(ref.shape[:3]).reshape(3, -1)
    ras = img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]
    lps = ras * np.array([[-1.0], [-1.0], [1.0]])
    ours_index = volume.geometry.physical_to_index(lps.T).T  # (i, j, k)
    data = volume.array.astype(np.float64)
    coords = ours_index[::-1]  # (k, j, i) for the (z, y, x) array
    upper = np.array(data.shape[:3], float)[:, None] - 1
    # inside our grid, allowing float round-off of 0.01 voxel at the border slices
    inside = np.all((coords >= -0.01) & (coords <= upper + 0.01), axis=0)
    coords = np.clip(coords, 0, upper)
    sampled = ndimage.map_coordinates(data, coords[:, inside], order=1, mode="nearest")
    # compare where our volume holds acquired data (not the air filled in around a tilt)
    values_ref = ref.reshape(-1)[inside]
    values_ours = sampled
    return float(np.corrcoef(values_ours, values_ref)[0, 1]), float(inside.mean())


# ------------------------------------------------------------------------- the test
def _dicom_files(case):
    folder = corpus_case_dir(case) / "dicom"
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def _refs(case):
    ref_dir = corpus_case_dir(case) / "reference"
    return ref_dir, case["reference_file"], case["all_reference_files"].split()


def _find(ref_dir, name):
    hits = [p for p in ref_dir.rglob(name)]
    assert hits, f"reference {name} missing in {ref_dir}"
    return hits[0]


@pytest.mark.parametrize("case", CASES or [None], ids=[c["case_id"] for c in CASES] or ["corpus-absent"])
def test_corpus_case(case, corpus):
    mode = _mode(case)
    folder = corpus_case_dir(case) / "dicom"
    ref_dir, ref_name, all_refs = _refs(case)
    what = case["case_id"]

    if mode == "split":
        result = scan_files(_dicom_files(case), cache=False)
        assert len(result.stacks) == 2, f"{what}: expected 2 stacks, got {len(result.stacks)}"
        refs = [reference_canonical(_find(ref_dir, n)) for n in all_refs if n.endswith((".nii", ".nii.gz"))]
        assert len(refs) == 2
        matched = 0
        for stack in result.stacks:
            vol = load_stack(stack)
            data, aff = ours_canonical(vol)
            for ref_data, ref_aff in refs:
                if ref_data.shape == data.shape and np.allclose(
                    aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0),
                    ref_aff[:3, :3] / np.linalg.norm(ref_aff[:3, :3], axis=0),
                    atol=1e-4,
                ):
                    assert_voxels_equal(data, ref_data, what)
                    assert_affines_match(aff, ref_aff, data.shape, what)
                    matched += 1
            assert_positions_on_grid(vol.geometry.affine_lps(), file_positions(stack.paths), what)
        assert matched == 2, f"{what}: each stack must match one reference"
        return

    ref_path = _find(ref_dir, ref_name)
    if mode in ("tilt", "gap"):
        raw = load_files(_dicom_files(case), regularize=False)
        assert not raw.metadata["regular_geometry"]
        data, aff = ours_canonical(raw)
        ref_raw = _find(ref_dir, "dcm2niix.nii.gz")
        ref_data, _ = reference_canonical(ref_raw)
        assert_voxels_equal(data, ref_data, f"{what} raw stack")
        # exact geometry of the raw stack: per-slice positions
        instances = raw.metadata["provenance"]["source_instances"]
        positions = np.array(raw.metadata["slice_positions"])
        by_uid = {
            str(pydicom.dcmread(str(p), stop_before_pixels=True, force=True).get("SOPInstanceUID")): p
            for p in _dicom_files(case)
        }
        for k, inst in enumerate(instances):
            ipp = file_positions([str(by_uid[inst["sop_instance_uid"]])])[0]
            np.testing.assert_allclose(positions[k], ipp, atol=1e-3, err_msg=f"{what}: slice {k}")
        if mode == "tilt":
            sheared = np.array(raw.metadata["affine_lps"])
            assert_positions_on_grid(sheared, file_positions(_dicom_files(case)), f"{what} sheared affine")
            problem = "tilt"
        else:
            problem = "uneven slice spacing"
        with pytest.raises(GeometryError) as exc:
            load_path(folder, geometry_policy="reject")
        message = str(exc.value)
        assert problem in message and "mm" in message, message
        if mode == "tilt":
            assert "degrees" in message
        corrected = load_path(folder)  # default policy: resample
        assert corrected.metadata["regularized"]
        assert corrected.metadata["warnings"], "resampling must leave a warning"
        ref_name = next(n for n in all_refs if ("_Tilt_" in n or "_Eq_" in n) and n.endswith((".nii", ".nii.gz")))
        corr, inside = correlation_on_reference_grid(corrected, _find(ref_dir, ref_name))
        # same field of view within one voxel: first and far corner voxel centres, canonical RAS
        ours_data, ours_aff = ours_canonical(corrected)
        ref_data, ref_aff = reference_canonical(_find(ref_dir, ref_name))
        voxel = max(np.linalg.norm(ours_aff[:3, :3], axis=0).max(), np.linalg.norm(ref_aff[:3, :3], axis=0).max())
        far_ours = (ours_aff @ np.array([*(np.array(ours_data.shape[:3]) - 1), 1.0]))[:3]
        far_ref = (ref_aff @ np.array([*(np.array(ref_data.shape[:3]) - 1), 1.0]))[:3]
        assert np.abs(ours_aff[:3, 3] - ref_aff[:3, 3]).max() <= voxel, f"{what}: origin off by more than a voxel"
        assert np.abs(far_ours - far_ref).max() <= voxel, f"{what}: far corner off by more than a voxel"
        assert inside > 0.95, f"{what}: only {inside:.0%} of the reference FOV covered"
        assert corr > 0.99, f"{what}: correlation {corr:.4f} with {ref_name}"
        return

    vol = load_path(folder)
    assert not np.isnan(vol.array).any() if vol.array.dtype.kind == "f" else True
    data, aff = ours_canonical(vol)
    ref_data, ref_aff = reference_canonical(ref_path)
    assert_voxels_equal(data, ref_data, what)
    single = mode == "single slice"
    assert_affines_match(aff, ref_aff, data.shape, what, in_plane_only=single)
    assert_positions_on_grid(vol.geometry.affine_lps(), file_positions(_dicom_files(case)), what, in_plane_only=single)
    if single:
        assert vol.metadata.get("z_spacing_source"), "single slice: z spacing source must be stated"
    provenance = vol.metadata["provenance"]
    assert provenance["source_instances"] and "rescale" in provenance
    assert all("file" not in i for i in provenance["source_instances"])  # written next to outputs: no file names
