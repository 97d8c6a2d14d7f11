#!/usr/bin/env python
"""DICOM benchmark: MedPrep against its peers on the same synthetic input, in the same run.

Generates a synthetic CT series (default 300 slices of 512 x 512 int16, headers like a real
scanner's: patient/study/series/equipment modules, a nested sequence, private tags) in a
temporary folder, then measures, with medians over repeats on a warm page cache:

(a) loading the series into one array: MedPrep (``MedPrepLib.dicom.load.load_path``) vs
    SimpleITK's ``ImageSeriesReader`` (GDCM file-name discovery + read). Each tool runs in its
    own subprocess, so that peak memory can be measured from the kernel (``VmHWM``, reset
    through ``/proc/self/clear_refs`` before loading) - tracemalloc does not see SimpleITK's
    C++ allocations. Peak memory is reported relative to the output array's size.
(b) header-only scanning: ``MedPrepLib.dicom.scan.scan`` (no cache, one worker) vs a plain
    pydicom loop (``dcmread(stop_before_pixels=True)``), in files per second.

Targets (issue 3): load <= 0.4x SimpleITK's time, peak memory <= 1.3x the output array,
header scan >= 5,000 files/s on one core. This is a script, not a test: run

    python benchmarks/bench_dicom.py [--slices 300] [--size 512] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_LOAD_RATIO = 0.4
TARGET_PEAK_RATIO = 1.3
TARGET_SCAN_RATE = 5000.0


# -- synthetic data -------------------------------------------------------------------------------


def generate_series(folder: Path, n_slices: int, size: int) -> list[Path]:
    """Write a synthetic CT series (LPS axial, 0.7 mm pixels, 1.25 mm slices, int16, HU = stored - 1024)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.42 * size) ** 2
    paths = []
    for k in range(n_slices):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20000101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.AcquisitionTime = ds.ContentTime = f"1200{k % 60:02d}.000000"
        ds.AccessionNumber = "0"
        ds.Modality = "CT"
        ds.Manufacturer = "SYNTHETIC"
        ds.InstitutionName = "BENCHMARK"
        ds.ReferringPhysicianName = ""
        ds.StationName = "BENCH01"
        ds.StudyDescription = "BENCHMARK CHEST"
        ds.SeriesDescription = "AXIAL 1.25 STANDARD"
        ds.ManufacturerModelName = "Synthetic CT 64"
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = generate_uid()
        ds.ReferencedImageSequence = Sequence([ref])
        ds.PatientName = "Benchmark^Phantom"
        ds.PatientID = "BENCH-0001"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "1.25"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.SoftwareVersions = "1.0"
        ds.ReconstructionDiameter = "360"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = "200"
        ds.Exposure = "100"
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-179.65, -179.65, -k * 1.25]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = str(-k * 1.25)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [0.703125, 0.703125]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelPaddingValue = -2000
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.private_block(0x0009, "SYNTHETIC PRIVATE", create=True).add_new(0x10, "LO", "private value")
        ds.private_block(0x0043, "SYNTHETIC RECON", create=True).add_new(0x10, "OB", bytes(512))
        img = np.where(body, 1064 + rng.integers(-40, 40, (size, size)), 24).astype(np.int16)
        ds.PixelData = img.tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        path = folder / f"CT{k:05d}.dcm"
        try:
            ds.save_as(path, enforce_file_format=True)
        except TypeError:  # pydicom 2.4
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


# -- child processes: one tool each, memory from the kernel -----------------------------------


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _load_medprep(folder: str):
    from MedPrepLib.sources import load_path

    vol = load_path(folder)
    return vol.array


def _load_simpleitk(folder: str):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = reader.Execute()
    return sitk.GetArrayViewFromImage(image), image


def child(tool: str, folder: str, repeats: int) -> dict:
    import numpy as np  # noqa: F401 - imported before the baseline, as both tools need it

    load = {"medprep": _load_medprep, "simpleitk": _load_simpleitk}[tool]
    if tool == "simpleitk":
        import SimpleITK  # noqa: F401
    else:
        import MedPrepLib.dicom.load  # noqa: F401
    exact_peak = _reset_peak()
    baseline = _status("VmRSS")
    t0 = time.perf_counter()
    out = load(folder)
    first = time.perf_counter() - t0
    peak = _status("VmHWM")
    array = out[0] if isinstance(out, tuple) else out
    info = {"nbytes": int(array.nbytes), "dtype": str(array.dtype), "shape": list(array.shape)}
    del out, array
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        out = load(folder)
        times.append(time.perf_counter() - t0)
        del out
    return {
        **info,
        "peak_extra": peak - baseline,
        "peak_exact": exact_peak,
        "times": times,
        "median": statistics.median(times),
    }


def run_child(tool: str, folder: Path, repeats: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", tool, str(folder), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- header scans (in this process) ----------------------------------------------------------


def scan_rates(folder: Path, repeats: int) -> tuple[float, float, int]:
    import pydicom

    from MedPrepLib.dicom.scan import scan

    files = sorted(str(p) for p in folder.iterdir())
    medprep, plain = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = scan(str(folder), cache=False, workers=1)
        medprep.append(len(files) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for f in files:
            pydicom.dcmread(f, stop_before_pixels=True)
        plain.append(len(files) / (time.perf_counter() - t0))
    n_in_stacks = sum(len(s.headers) for s in result.stacks)
    return statistics.median(medprep), statistics.median(plain), n_in_stacks


# -- main -------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="write the synthetic series here and keep it")
    ap.add_argument("--child", nargs=2, metavar=("TOOL", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.repeats)))
        return 0

    with tempfile.TemporaryDirectory(prefix="medprep-bench-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp) / "ct"
        if not (folder.is_dir() and len(list(folder.glob("*.dcm"))) == args.slices):
            print(f"generating {args.slices} slices of {args.size}x{args.size} in {folder} ...", flush=True)
            generate_series(folder, args.slices, args.size)
        for f in folder.iterdir():  # warm the page cache
            f.read_bytes()
        print(f"loading ({args.repeats} repeats per tool, each tool in its own process) ...", flush=True)
        mp = run_child("medprep", folder, args.repeats)
        sk = run_child("simpleitk", folder, args.repeats)
        print("scanning headers ...", flush=True)
        scan_rate, pydicom_rate, n_in_stacks = scan_rates(folder, args.repeats)

    load_ratio = mp["median"] / sk["median"]
    mp_peak = mp["peak_extra"] / mp["nbytes"]
    sk_peak = sk["peak_extra"] / sk["nbytes"]
    rows = [
        ("load time (s, median)", f"{mp['median']:.3f}", f"{sk['median']:.3f} SimpleITK", f"{load_ratio:.2f}x",
         f"<= {TARGET_LOAD_RATIO}x", load_ratio <= TARGET_LOAD_RATIO),
        ("peak memory / output array", f"{mp_peak:.2f}", f"{sk_peak:.2f} SimpleITK", "",
         f"<= {TARGET_PEAK_RATIO}", mp_peak <= TARGET_PEAK_RATIO),
        ("header scan (files/s, median)", f"{scan_rate:,.0f}", f"{pydicom_rate:,.0f} pydicom",
         f"{scan_rate / pydicom_rate:.2f}x", f">= {TARGET_SCAN_RATE:,.0f}/s", scan_rate >= TARGET_SCAN_RATE),
    ]  # fmt: skip
    print()
    print(f"input: {args.slices} x {args.size}x{args.size} int16 CT slices; output arrays: "
          f"MedPrep {mp['dtype']} {mp['nbytes'] / 2**20:.0f} MiB, SimpleITK {sk['dtype']} {sk['nbytes'] / 2**20:.0f} MiB")  # fmt: skip
    header = ("metric", "MedPrep", "peer", "ratio", "target", "met")
    table = [header] + [(a, b, c, d, e, "yes" if f else "NO") for a, b, c, d, e, f in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if not (mp["peak_exact"] and sk["peak_exact"]):
        print("note: /proc/self/clear_refs unavailable; peaks include start-up, not only loading")
    if n_in_stacks != args.slices:
        print(f"WARNING: the scan put {n_in_stacks} of {args.slices} files into stacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
