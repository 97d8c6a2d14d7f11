#!/usr/bin/env python
"""Export benchmark (issue 9): ``medprep export`` against the loops people write today, whole
processes, same cohort, same run.

A cohort of synthetic CT series (default 12 patients, 512 x 512 x 300 at 0.7 x 0.7 x 2.5 mm, the
chest phantom in HU with noise, stored like a scanner's) is written once, then each tool turns
every series into ``.nii.gz`` files, timed from the start of its process to its end. A dozen
cases, so that a tool's one-off start (interpreter, imports, header scan, worker processes: about
a second for ``medprep export``) is shared as in a real dataset of dozens to thousands of cases
rather than measured as per-case work; ``--cases 4`` is a quicker check that counts it 3x.

raw path (DICOM -> int16 HU ``.nii.gz``, nnU-Net's default input)
    * ``medprep export COHORT OUT --format nnunet --workers auto`` (with and without QC)
    * ``dcm2niix -z y`` per series, in a loop (if dcm2niix is installed)
    * a SimpleITK script: ``ImageSeriesReader`` -> ``WriteImage(..., useCompression=True)`` per series

recipe path (-> 1 mm linear -> lung window -> float32 ``.nii.gz``)
    * ``medprep export ... --recipe`` with that recipe
    * a SimpleITK script: read -> ``Resample`` (linear, 1 mm) -> ``IntensityWindowing`` -> write
    * MONAI: ``LoadImaged`` -> ``Orientationd`` -> ``Spacingd`` -> ``ScaleIntensityRanged`` ->
      ``SaveImaged`` per series (if MONAI is installed)

Printed per tool: seconds per case (wall clock of the whole process / cases), the ratio to
MedPrep, and the peak resident memory of the largest process the tool ran (``ru_maxrss`` of its
process tree: for ``medprep export --workers N`` that is the largest worker, which is what the
"per worker" target means). Targets: raw <= 0.6 s per case, recipe <= 1.5 s per case, peak
memory per worker < 1.2 GB. Run it alone on the machine (shared cores make every number noisy):

    python benchmarks/bench_export.py [--cases 12] [--slices 300] [--size 512] [--keep DIR] [--skip monai]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_RAW_S = 0.6
TARGET_RECIPE_S = 1.5
TARGET_PEAK_GB = 1.2
RECIPE = {
    "version": 1,
    "steps": [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0], "interpolation": "linear"},
        {"op": "window", "preset": "lung"},
    ],
}


def write_cohort(root: Path, cases: int, slices: int, size: int) -> tuple[Path, list[Path]]:
    """One CT series per patient, written once into ``root/series/patientN-...`` and reused; the
    cohort folder ``root/cohort-<cases>`` holds exactly ``cases`` of them (hard links). Returns
    the cohort folder and its series folders."""
    from MedPrepLib.sampledata import DemoPatient, chest_ct_phantom, write_ct_series

    cohort = root / f"cohort-{cases}x{slices}x{size}"
    series = []
    for n in range(1, cases + 1):
        source = root / "series" / f"patient{n}-{slices}x{size}"
        if not (source / f"IM{slices:04d}.dcm").is_file():
            phantom = chest_ct_phantom((slices, size, size), (0.7, 0.7, 2.5), seed=n)
            write_ct_series(phantom, source, study_seed=f"bench-{n}-{slices}-{size}",
                            patient=DemoPatient(f"BENCH^{n}", f"BENCH-{n:04d}"), overwrite=True)  # fmt: skip
        target = cohort / f"patient{n}"
        if not target.is_dir():
            target.mkdir(parents=True)
            for f in source.iterdir():
                os.link(f, target / f.name)
        series.append(target)
    return cohort, series


SITK_RAW = """
import sys, SimpleITK as sitk
for n, folder in enumerate(sys.argv[2:]):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = sitk.Cast(reader.Execute(), sitk.sitkInt16)
    sitk.WriteImage(image, f"{sys.argv[1]}/case{n}.nii.gz", useCompression=True)
"""

SITK_RECIPE = """
import sys, SimpleITK as sitk
for n, folder in enumerate(sys.argv[2:]):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = reader.Execute()
    size = [int(round(sz * sp / 1.0)) for sz, sp in zip(image.GetSize(), image.GetSpacing())]
    image = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkLinear,
                          image.GetOrigin(), (1.0, 1.0, 1.0), image.GetDirection(), -1000.0, sitk.sitkFloat32)
    image = sitk.IntensityWindowing(image, -1350.0, 150.0, 0.0, 1.0)
    sitk.WriteImage(image, f"{sys.argv[1]}/case{n}.nii.gz", useCompression=True)
"""

MONAI = """
import sys
from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd, ScaleIntensityRanged, SaveImaged
pipeline = Compose([
    LoadImaged(keys="image", image_only=False), EnsureChannelFirstd(keys="image"), Orientationd(keys="image", axcodes="RAS"),
    Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
    ScaleIntensityRanged(keys="image", a_min=-1350, a_max=150, b_min=0.0, b_max=1.0, clip=True),
    SaveImaged(keys="image", output_dir=sys.argv[1], output_postfix="lung", separate_folder=False, print_log=False),
])
for folder in sys.argv[2:]:
    pipeline({"image": folder})
"""

RUNNER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - start
print(json.dumps({"code": code, "seconds": wall, "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_tool(command: list[str], out: Path) -> dict:
    """Run ``command`` as a whole process (through a small runner that reports its tree's peak RSS)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDPREP_CACHE="off")
    result = subprocess.run([sys.executable, "-c", RUNNER, *command], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout)


def tools(series: list[Path], cohort: Path, work: Path, skip: set[str]) -> dict[str, tuple[str, list[str], Path]]:
    """name -> (path kind, command, output folder)."""
    recipe = work / "recipe.json"
    work.mkdir(parents=True, exist_ok=True)
    recipe.write_text(json.dumps(RECIPE))
    medprep = [sys.executable, "-m", "MedPrepLib", "export", str(cohort)]
    names = [str(s) for s in series]
    out = {
        "medprep raw (--workers auto, --no-qc)": ("raw", [*medprep, str(work / "m1"), "--workers", "auto", "--no-qc"], work / "m1"),
        "medprep raw (--workers auto, QC)": ("raw", [*medprep, str(work / "m2"), "--workers", "auto"], work / "m2"),
        "medprep raw (--workers 1, --no-qc)": ("raw", [*medprep, str(work / "m3"), "--workers", "1", "--no-qc"], work / "m3"),
        "SimpleITK loop": ("raw", [sys.executable, "-c", SITK_RAW, str(work / "s1"), *names], work / "s1"),
        "medprep recipe (--workers auto, --no-qc)": (
            "recipe", [*medprep, str(work / "m4"), "--workers", "auto", "--no-qc", "--recipe", str(recipe)], work / "m4"),
        "SimpleITK recipe script": ("recipe", [sys.executable, "-c", SITK_RECIPE, str(work / "s2"), *names], work / "s2"),
    }  # fmt: skip
    if shutil.which("dcm2niix") and "dcm2niix" not in skip:
        loop = "; ".join(f"dcm2niix -z y -o {work / 'd1'} -f case{n} {s} >/dev/null" for n, s in enumerate(names))
        out["dcm2niix -z y loop"] = ("raw", ["bash", "-c", loop], work / "d1")
    if "monai" not in skip:
        try:
            import monai  # noqa: F401

            out["MONAI pipeline"] = ("recipe", [sys.executable, "-c", MONAI, str(work / "x1"), *names], work / "x1")
        except ImportError:
            pass
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=12, help="patients in the cohort (default 12)")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated cohort in this folder")
    parser.add_argument("--skip", default="", help="comma-separated tools to leave out: monai, dcm2niix")
    parser.add_argument("--only", default="", help="comma-separated substrings of the tool names to run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds: every tool runs once per round, in turn; the table shows each tool's median")  # fmt: skip
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="medprep-bench-export-"))
    cohort, series = write_cohort(root, args.cases, args.slices, args.size)
    work = root / "out"
    chosen = tools(series, cohort, work, set(filter(None, args.skip.split(","))))
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        chosen = {k: v for k, v in chosen.items() if any(w in k for w in wanted)}
    print(f"cohort: {args.cases} CT series of {args.size} x {args.size} x {args.slices} (0.7 x 0.7 x 2.5 mm), "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    for round_ in range(1, max(1, args.repeat) + 1):  # round-robin: a slow minute of the host hits every tool
        for name, (_, command, out) in chosen.items():
            measured = run_tool(command, out)
            files = len(list(out.rglob("*.nii.gz")))
            runs[name].append(measured)
            print(f"  round {round_}: ran {name}: {measured['seconds']:.1f} s, exit {measured['code']}, {files} .nii.gz",
                  flush=True)  # fmt: skip
    results = {}
    for name, (kind, _, _) in chosen.items():
        seconds = sorted(m["seconds"] for m in runs[name])
        median = statistics.median(seconds)
        peak = max(m["peak_kb"] for m in runs[name])
        results[name] = (kind, {"seconds": median, "peak_kb": peak, "runs": seconds}, None)
    print()
    print(f"{'tool':44} {'path':6} {'s/case':>7} {'vs MedPrep':>10} {'peak GB':>8}")
    for kind, target in (("raw", TARGET_RAW_S), ("recipe", TARGET_RECIPE_S)):
        ours = next((m for n, (k, m, _) in results.items() if k == kind and n.startswith("medprep")), None)
        for name, (k, measured, _) in results.items():
            if k != kind:
                continue
            per_case = measured["seconds"] / args.cases
            ratio = f"{per_case / (ours['seconds'] / args.cases):.1f}x" if ours else "-"
            spread = (f"   runs {min(measured['runs']) / args.cases:.2f}-{max(measured['runs']) / args.cases:.2f}"
                      if len(measured["runs"]) > 1 else "")  # fmt: skip
            print(f"{name:44} {kind:6} {per_case:7.2f} {ratio:>10} {measured['peak_kb'] / 2**20:8.2f}{spread}")
        if ours:
            per_case = ours["seconds"] / args.cases
            met = "yes" if per_case <= target else "no"
            print(f"{'  target':44} {kind:6} {target:7.2f} {'':>10} {TARGET_PEAK_GB:8.2f}   met (time): {met}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
