"""Seeded random-mutation fuzzing of the DICOM readers (issue 7, point 8).

Every mutated file (:mod:`dicom_mutations`: lengths, VRs, Rows / Columns / BitsAllocated /
NumberOfFrames and other values, the transfer syntax UID, sequence delimiters, fragments,
truncation at element boundaries and anywhere, flipped and overwritten header bytes) goes
through the real entry points: ``scan_files`` on the file, ``load_path`` on the file and, for
a series, ``load_path`` on a folder of the series where this one file is mutated. Each must
give a volume consistent with the header (in-plane shape, dtype, finite positive spacing) or
a :class:`~MedPrepLib.errors.MedPrepError`: any other exception, a hang (more than
``MEDPREP_FUZZ_TIME_LIMIT`` seconds, default 20, per mutation) or running out of memory is a
failure. The worker process runs with ``MEDPREP_MAX_PIXEL_BYTES=64M`` and an address-space
limit of its start-up size + 1 GiB, so an allocation beyond the budget fails loudly.

Environment:

- ``MEDPREP_FUZZ_SEED`` (default 7): the seed; mutation *i* of seed *s* is always the same.
- ``MEDPREP_FUZZ_N`` (default 400 synthetic, 300 on the corpus): mutations per test.
- ``MEDPREP_FUZZ_ONLY=12,97``: replay only these mutation numbers (from a failure message).
- ``MEDPREP_FUZZ_KEEP=DIR``: copy the mutated file of every failure into DIR.

CI runs the defaults (about a minute on two cores). For a long run, e.g. thousands of mutations
over several seeds::

    for s in 1 2 3 4; do MEDPREP_FUZZ_SEED=$s MEDPREP_FUZZ_N=3000 \\
        .venv/bin/python -m pytest Testing/test_dicom_fuzz.py -q -p no:cacheprovider; done
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dicom_factory import save, write_ct_series, write_enhanced_mr, write_mosaic  # noqa: E402

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
WORKER = TESTING / "dicom_mutations.py"
SEED = int(os.environ.get("MEDPREP_FUZZ_SEED", "7"))
ONLY = [int(i) for i in os.environ.get("MEDPREP_FUZZ_ONLY", "").replace(" ", "").split(",") if i]
TIME_LIMIT = float(os.environ.get("MEDPREP_FUZZ_TIME_LIMIT", "20"))
BUDGET = "64M"
ADDRESS_SPACE_EXTRA = 1 << 30
BATCH = 100


def _n(default: int) -> int:
    return int(os.environ.get("MEDPREP_FUZZ_N", str(default)))


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTING), env.get("PYTHONPATH", "")])
    env.update(
        MEDPREP_MAX_PIXEL_BYTES=BUDGET,
        MEDPREP_CACHE="off",
        MEDPREP_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1",
    )
    return env


def run_fuzz(bases: list[dict], n: int, work: Path, label: str) -> list[str]:
    """Run mutations 0..n-1 (or MEDPREP_FUZZ_ONLY) in worker processes; the failures, as text."""
    indices = ONLY or list(range(n))
    failures: list[str] = []
    keep = os.environ.get("MEDPREP_FUZZ_KEEP")
    pending = list(indices)
    while pending:
        batch, pending = pending[:BATCH], pending[BATCH:]
        runs = _contiguous(batch)
        for start, stop in runs:
            failures += _run_range(bases, start, stop, work, label, keep)
    return failures


def _contiguous(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _replay(label: str, index: int) -> str:
    return f"MEDPREP_FUZZ_SEED={SEED} MEDPREP_FUZZ_ONLY={index} pytest Testing/test_dicom_fuzz.py -k {label}"


def _run_range(bases, start: int, stop: int, work: Path, label: str, keep: str | None) -> list[str]:
    failures: list[str] = []
    while start < stop:
        job = {
            "seed": SEED,
            "start": start,
            "stop": stop,
            "bases": bases,
            "work": str(work),
            "time_limit": TIME_LIMIT,
            "address_space_extra": ADDRESS_SPACE_EXTRA,
        }
        timeout = 30 + TIME_LIMIT * 1.5 * (stop - start)
        try:
            proc = subprocess.run(
                [sys.executable, str(WORKER)],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_worker_env(),
            )
            out, err, died = proc.stdout, proc.stderr, proc.returncode != 0
            why = f"worker exited with {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            died, why = True, f"worker killed after {timeout:.0f} s (a hang the time limit could not interrupt)"
        last_begin, done = None, set()
        for line in out.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "begin" in record:
                last_begin = record["begin"]
                continue
            done.add(record["index"])
            bad = {k: v for k, v in record["checks"].items() if not v["ok"]}
            if bad:
                failures.append(_describe(record, bad, label))
                _keep(bases, record["index"], keep)
        if not died:
            break
        crashed = last_begin if last_begin is not None and last_begin not in done else None
        if crashed is None:
            failures.append(f"{label}: {why} before any mutation ran: {err[-2000:]}")
            break
        base = bases[crashed % len(bases)]["name"]
        failures.append(f"[{label} #{crashed} on {base}] {why}: {err[-1500:]}\n  replay: {_replay(label, crashed)}")
        _keep(bases, crashed, keep)
        start = crashed + 1
    return failures


def _describe(record: dict, bad: dict, label: str) -> str:
    lines = [f"[{label} #{record['index']} on {record['base']}] {'; '.join(record['mutation'])}"]
    for check, v in bad.items():
        lines.append(f"  {check}: {v['why']}")
        if v.get("traceback"):
            lines.append("    " + v["traceback"].strip().replace("\n", "\n    "))
    lines.append(f"  replay: {_replay(label, record['index'])}")
    return "\n".join(lines)


def _keep(bases, index: int, keep: str | None) -> None:
    if not keep:
        return
    from dicom_mutations import mutate, mutation_rng

    base = bases[index % len(bases)]
    data, _ = mutate(Path(base["file"]).read_bytes(), mutation_rng(SEED, index))
    Path(keep).mkdir(parents=True, exist_ok=True)
    (Path(keep) / f"seed{SEED}-{index}-{base['name']}.dcm").write_bytes(data)


def _assert_no_failures(failures: list[str], n: int) -> None:
    assert not failures, f"{len(failures)} of {n} mutations failed:\n\n" + "\n\n".join(failures[:15])


# ---------------------------------------------------------------------------- the bases
def _resave(src: Path, dst: Path, transfer_syntax: str) -> Path:
    import pydicom

    ds = pydicom.dcmread(str(src))
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return save(ds, dst)


def _synthetic_bases(root: Path) -> list[dict]:
    import pydicom

    bases: list[dict] = []
    series = write_ct_series(root / "ct", 3, rows=12, cols=10, shuffle_names=False, PixelPaddingValue=0)
    bases.append({"name": "ct_explicit", "file": str(series[1]), "companions": [str(series[0]), str(series[2])]})
    for name, ts in (("ct_implicit", "1.2.840.10008.1.2"), ("ct_deflated", "1.2.840.10008.1.2.1.99")):
        folder = root / name
        files = [_resave(p, folder / p.name, ts) for p in series]
        bases.append({"name": name, "file": str(files[1]), "companions": [str(files[0]), str(files[2])]})
    from dicom_factory import rewrite_big_endian

    folder = root / "ct_big_endian"
    files = []
    for p in series:
        shutil.copy(p, folder.mkdir(exist_ok=True) or folder / p.name)
        files.append(rewrite_big_endian(folder / p.name))
    bases.append({"name": "ct_big_endian", "file": str(files[1]), "companions": [str(files[0]), str(files[2])]})
    folder = root / "ct_rle"
    files = []
    for p in series:
        ds = pydicom.dcmread(str(p))
        ds.compress("1.2.840.10008.1.2.5")
        files.append(save(ds, folder / p.name))
    bases.append({"name": "ct_rle", "file": str(files[1]), "companions": [str(files[0]), str(files[2])]})
    signed = write_ct_series(root / "ct_signed", 2, rows=8, cols=8, signed=True, bits_stored=12, rescale=(0.5, 3.0))
    bases.append({"name": "ct_signed_float_lut", "file": str(signed[0]), "companions": [str(signed[1])]})
    enhanced, _ = write_enhanced_mr(root / "enhanced.dcm", 3, n_times=2, rows=6, cols=8)
    bases.append({"name": "mr_enhanced_4d", "file": str(enhanced)})
    tiles = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    mosaic = write_mosaic(root / "mosaic.dcm", tiles, first_tile_position=(-10, -10, 0), series_uid="1.2.3.4.5")
    bases.append({"name": "mr_mosaic", "file": str(mosaic)})
    return bases


_CORPUS_CASES = {
    # case id: how many other files of the series to use as companions
    "mr_toshiba_small_explicit": 0,
    "mr_toshiba_small_bigendian": 0,
    "mr_toshiba_small_j2k": 0,
    "ct_ge_rhapsode_single": 0,
    "mr_pmod_perslice_rescale": 2,
    "mr_philips_intera_cor4": 1,
    "mr_generic_jpeg_lossless": 1,
    "mr_generic_rle": 1,
    "mr_siemens_mosaic_jpegls_dcmtk": 0,
    "mr_siemens_mosaic_implicit": 0,
    "mr_philips_enhanced_anat": 0,
}


def _corpus_bases(corpus: Path) -> list[dict]:
    from conftest import corpus_case_dir, corpus_cases

    bases = []
    for case in corpus_cases():
        if case["case_id"] not in _CORPUS_CASES:
            continue
        files = sorted(p for p in (corpus_case_dir(case) / "dicom").iterdir() if p.is_file())
        first, others = files[0], files[1 : 1 + _CORPUS_CASES[case["case_id"]]]
        bases.append({"name": case["case_id"], "file": str(first), "companions": [str(p) for p in others]})
    return sorted(bases, key=lambda b: b["name"])


# ---------------------------------------------------------------------------- the tests
def test_mutation_engine_walks_every_base_and_replays_exactly(tmp_path):
    """The engine understands the unmutated files (so mutations hit real elements), and the same
    seed and number give the same bytes."""
    from dicom_mutations import mutate, mutation_rng, walk

    for base in _synthetic_bases(tmp_path):
        data = Path(base["file"]).read_bytes()
        layout = walk(data)
        tags = {e.tag for e in layout.elements}
        assert 0x00020010 in tags, base["name"]
        if base["name"] != "ct_deflated":  # the deflated data set is one zlib stream
            assert {0x00280010, 0x00280011, 0x7FE00010} <= tags, base["name"]
        a = mutate(data, mutation_rng(3, 17))
        assert a == mutate(data, mutation_rng(3, 17))


def test_unmutated_bases_load(tmp_path):
    """The harness is sound: every base loads as a volume through the same entry points."""
    from MedPrepLib.sources import load_path

    for base in _synthetic_bases(tmp_path):
        volume = load_path(base["file"])
        assert volume.array.size > 0, base["name"]


def test_fuzz_synthetic_files(tmp_path):
    """Mutations of synthetic files of every encoding the factory writes: explicit, implicit,
    deflated, big endian, RLE, signed with a float Modality LUT, enhanced 4D, mosaic."""
    bases = _synthetic_bases(tmp_path / "bases")
    n = _n(400)
    _assert_no_failures(run_fuzz(bases, n, tmp_path / "work", "synthetic"), n)


@pytest.mark.corpus
def test_fuzz_corpus_files(corpus, tmp_path):
    """Mutations of real files: native, big endian, JPEG 2000, JPEG Lossless, JPEG-LS, RLE,
    implicit mosaic, Philips enhanced; with two to three files of a series for the folder check."""
    bases = _corpus_bases(corpus)
    if not bases:
        pytest.skip("none of the fuzzed corpus cases is in the manifest")
    n = _n(300)
    _assert_no_failures(run_fuzz(bases, n, tmp_path / "work", "corpus"), n)


# -------------------------------------------------- regressions of what the fuzzer found
@pytest.mark.parametrize(
    ("attribute", "value", "shown"),
    [
        ("RescaleSlope", "inf", "RescaleSlope inf"),
        ("RescaleIntercept", "-inf", "RescaleIntercept -inf"),
        ("ImagePositionPatient", ["nan", "0", "0"], "ImagePositionPatient nan"),
        ("ImageOrientationPatient", ["1", "0", "0", "0", "inf", "0"], "ImageOrientationPatient 1"),
        ("PixelSpacing", ["0.5", "nan"], "PixelSpacing 0.5"),
    ],
)
def test_non_finite_geometry_or_rescale_is_skipped_not_an_overflow(tmp_path, attribute, value, shown):
    """Seed 7, mutations 397 / 1715: RescaleSlope 'inf' ended in OverflowError inside the
    Modality LUT, ImagePositionPatient 'nan' in a volume with a NaN origin."""
    import warnings

    from MedPrepLib.dicom.fastheader import read_header_fast
    from MedPrepLib.dicom.header import SkipFile, read_header
    from MedPrepLib.errors import MedPrepError
    from MedPrepLib.sources import load_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about writing an invalid DS
        paths = write_ct_series(tmp_path / "s", 3, rows=8, cols=8, shuffle_names=False)
        bad = write_ct_series(tmp_path / "bad", 1, rows=8, cols=8, **{attribute: value})[0]
    for reader in (read_header, read_header_fast):
        with pytest.raises(SkipFile) as info:
            reader(bad)
        assert info.value.reason == "unreadable" and shown in info.value.skipped.detail
        assert "not a finite number" in info.value.skipped.detail
    with pytest.raises(MedPrepError, match="not a finite number"):
        load_path(bad)
    assert load_path(paths[0]).array.shape == (1, 8, 8)


def test_modality_lut_refuses_non_finite_parameters():
    from MedPrepLib.dicom.pixels import apply_modality_lut
    from MedPrepLib.errors import DicomError

    buf = np.zeros((2, 2, 2), np.uint16)
    with pytest.raises(DicomError, match="not a finite number"):
        apply_modality_lut(buf, np.array([1.0, np.inf]), np.array([0.0, 0.0]))


@pytest.mark.parametrize("vr", [b"SQ", b"US", b"UT"])
def test_pixel_data_with_a_non_binary_vr_is_skipped(tmp_path, vr):
    """Seed 2, mutation 2500: PixelData's VR OB -> SQ on an RLE file made pydicom parse the
    fragments as sequence items and ask for gigabytes (MemoryError within a 64 MiB budget)."""
    import pydicom

    from MedPrepLib.dicom.fastheader import read_header_fast
    from MedPrepLib.dicom.header import SkipFile, read_header
    from MedPrepLib.errors import MedPrepError
    from MedPrepLib.sources import load_path

    src = write_ct_series(tmp_path / "s", 1, rows=8, cols=8)[0]
    ds = pydicom.dcmread(str(src))
    ds.compress("1.2.840.10008.1.2.5")
    data = bytearray(save(ds, tmp_path / "rle.dcm").read_bytes())
    at = data.index(b"\xe0\x7f\x10\x00O")  # OB (pydicom 3) or OW (pydicom 2.4)
    data[at + 4 : at + 6] = vr
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    for reader in (read_header, read_header_fast):
        with pytest.raises(SkipFile) as info:
            reader(bad)
        assert info.value.reason == "unreadable"
        assert f"PixelData element has VR {vr.decode()}, not OB or OW" in info.value.skipped.detail
    with pytest.raises(MedPrepError, match=f"VR {vr.decode()}"):
        load_path(bad)
