"""Resampling benchmark (issue 4, acceptance 5): MedPrep against the tools people use, same input.

    python benchmarks/bench_resample.py            # 512 x 512 x 300 at 0.7 x 0.7 x 2.5 mm -> 1 mm
    python benchmarks/bench_resample.py --quick    # 256 x 256 x 150, a few seconds per tool
    python benchmarks/bench_resample.py --tools medprep-linear,sitk-linear --repeats 5

Each tool runs in its own subprocess (fresh interpreter): time is the median of ``--repeats``
runs (a single run when the first one takes over 10 s), peak memory is the kernel's peak RSS
(``VmHWM``, reset before the work) minus the RSS before the input was loaded, so it counts
input + output + working memory. Missing packages are skipped with a note.

Agreement: every tool's output is compared, over a central slab of its output slices, with a
cubic B-spline (scipy ``map_coordinates(order=3)``, mirror boundaries) of the input evaluated at
the physical positions where *that tool* actually sampled (its real grid, printed), so grid
errors and interpolation quality are told apart. The real grid is read from the tool's output
(MedPrep, SimpleITK, MONAI) or derived from its documented sampling rule: ``scipy.ndimage.zoom``
aligns the corner voxel centres (spacing becomes s*(n-1)/(n'-1)); nnU-Net (skimage resize and
torch ``interpolate(align_corners=False)``) aligns the outer voxel edges, so its spacing is
s*n/n' while it reports the target spacing. "last slice" shows the mean of the last output
z-slice against the input's last slice (SimpleITK's obvious call with the input origin leaves
it at 0 = water).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPACING_IN = (0.7, 0.7, 2.5)  # (x, y, z) mm
SPACING_OUT = (1.0, 1.0, 1.0)
ORIGIN_IN = (-179.0, -150.0, -400.0)  # LPS mm, identity direction

IMAGE_TOOLS = [
    ("medprep-linear", "linear"),
    ("sitk-linear", "linear"),
    ("scipy-zoom-1", "linear"),
    ("nnunet-torch", "linear"),
    ("nnunet-torch-trilinear", "linear"),
    ("monai-spacing", "linear"),
    ("medprep-bspline", "high order"),
    ("medprep-bspline-cubic-z", "high order"),
    ("sitk-bspline", "high order"),
    ("scipy-zoom-3", "high order"),
    ("nnunet-scipy", "high order"),
]
LABEL_TOOLS = [
    ("medprep-label-nearest", "labels"),
    ("medprep-label-linear", "labels"),
    ("sitk-label-nearest", "labels"),
    ("nnunet-seg-scipy", "labels"),
    ("nnunet-seg-torch", "labels"),
]
BASELINE = {"linear": "medprep-linear", "high order": "medprep-bspline", "labels": "medprep-label-linear"}
SLOW_SECONDS = 10.0


# -- input ---------------------------------------------------------------------------------------
def make_inputs(shape_zyx, folder: Path) -> tuple[Path, Path]:
    """A smooth-ish CT-like int16 volume (HU) and a 5-class label map, saved as .npy."""
    from MedPrepLib.geometry import Geometry
    from MedPrepLib.processing.resample import grid_for_shape, resample
    from MedPrepLib.volume import Volume

    rng = np.random.default_rng(0)
    nz, ny, nx = shape_zyx
    coarse = rng.normal(size=(max(nz // 10, 4), max(ny // 16, 4), max(nx // 16, 4))).astype(np.float32)
    g = Geometry.from_shape(coarse.shape)
    field = resample(Volume(coarse, g), grid_for_shape(g, (nx, ny, nz)), interpolation="bspline").array
    z, y, x = np.ogrid[:nz, :ny, :nx]
    body = ((y - ny / 2) / (0.42 * ny)) ** 2 + ((x - nx / 2) / (0.47 * nx)) ** 2 < 1
    hu = np.where(body, 40 + 120 * field, -1000).astype(np.float32)
    hu += rng.normal(scale=10, size=hu.shape).astype(np.float32)  # mild noise
    label = np.zeros(shape_zyx, np.uint8)
    label[np.broadcast_to(body, shape_zyx)] = 1
    organs = [(0.5, 0.45, 0.3, 0.15), (0.5, 0.45, 0.7, 0.15), (0.3, 0.6, 0.5, 0.08), (0.7, 0.5, 0.45, 0.1)]
    for value, (oz, oy, ox, r) in enumerate(organs, start=2):
        inside = ((z - oz * nz) / (r * nz * 1.5)) ** 2 + ((y - oy * ny) / (r * ny)) ** 2 + ((x - ox * nx) / (r * nx)) ** 2 < 1
        label[inside] = value
        hu[inside] += 30 * value
    image_path, label_path = folder / "image.npy", folder / "label.npy"
    np.save(image_path, np.clip(hu, -1024, 3071).astype(np.int16))
    np.save(label_path, label)
    return image_path, label_path


# -- one tool (runs in a subprocess) -------------------------------------------------------------
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _edge_grid(n, s, n_new):
    """Real grid of edge-aligned resizing (skimage, torch align_corners=False): spacing, origin shift."""
    n, s, n_new = (np.asarray(v, float) for v in (n, s, n_new))
    spacing = s * n / n_new
    return spacing, s * (n / n_new - 1) / 2


def _tool(name: str, array: np.ndarray):
    """Run tool ``name`` on the (z, y, x) array; returns (run callable, grid callable)."""
    from MedPrepLib.geometry import Geometry
    from MedPrepLib.processing.resample import grid_for_spacing

    g_in = Geometry.from_shape(array.shape, spacing=SPACING_IN, origin=ORIGIN_IN)
    target = grid_for_spacing(g_in, SPACING_OUT)
    n_in = np.array(g_in.size)
    n_new = np.array(target.size)  # every tool gets the same output size: round(n * s / s')
    shape_new = tuple(n_new[::-1])

    def edge_aligned(out):
        spacing, shift = _edge_grid(n_in, SPACING_IN, n_new)
        return spacing, np.asarray(ORIGIN_IN) + shift

    if name.startswith("medprep"):
        import scipy.ndimage  # noqa: F401 - imported before the measurement, like every other tool's code

        from MedPrepLib.processing.resample import resample
        from MedPrepLib.volume import Volume

        options = {
            "medprep-linear": {"interpolation": "linear"},
            "medprep-bspline": {"interpolation": "bspline"},
            "medprep-bspline-cubic-z": {"interpolation": "bspline", "anisotropy_threshold": 1e9},
            "medprep-label-nearest": {"interpolation": "nearest"},
            "medprep-label-linear": {"interpolation": "label_linear"},
        }[name]
        volume = Volume(array, g_in)

        def run():
            return resample(volume, target, **options).array

        return run, lambda out: (np.array(target.spacing), np.array(target.origin))

    if name.startswith("sitk"):
        import SimpleITK as sitk

        from MedPrepLib.volume import Volume

        image = Volume(array, g_in).to_sitk()
        interp = {"sitk-linear": sitk.sitkLinear, "sitk-bspline": sitk.sitkBSpline, "sitk-label-nearest": sitk.sitkNearestNeighbor}[name]
        pixel = image.GetPixelID() if "label" in name else sitk.sitkFloat32
        holder = {}

        def run():
            # the obvious call: input origin, target spacing, default value 0
            out = sitk.Resample(image, [int(v) for v in n_new], sitk.Transform(), interp, image.GetOrigin(), SPACING_OUT,
                                image.GetDirection(), 0, pixel)
            holder["image"] = out
            return sitk.GetArrayViewFromImage(out)

        return run, lambda out: (np.array(holder["image"].GetSpacing()), np.array(holder["image"].GetOrigin()))

    if name.startswith("scipy-zoom"):
        from scipy import ndimage

        order = int(name[-1])
        zoom = (n_new / n_in)[::-1]

        def run():
            return ndimage.zoom(array, zoom, output=np.float32, order=order)

        def grid(out):
            n_out = np.array(out.shape[::-1])
            return np.asarray(SPACING_IN) * (n_in - 1) / (n_out - 1), np.asarray(ORIGIN_IN)

        return run, grid

    if name in ("nnunet-scipy", "nnunet-seg-scipy"):
        from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

        is_seg = "seg" in name
        data = array[None] if is_seg else array.astype(np.float32)[None]

        def run():
            return resample_data_or_seg_to_shape(data, shape_new, SPACING_IN[::-1], SPACING_OUT[::-1], is_seg=is_seg,
                                                 order=1 if is_seg else 3, order_z=0, force_separate_z=None)[0]

        return run, edge_aligned

    if name.startswith("nnunet") and "torch" in name:
        import torch
        from nnunetv2.preprocessing.resampling.resample_torch import resample_torch_fornnunet

        torch.set_num_threads(os.cpu_count() or 1)
        is_seg = "seg" in name
        data = torch.from_numpy(array[None] if is_seg else array.astype(np.float32)[None])
        separate = False if name.endswith("trilinear") else None

        def run():
            out = resample_torch_fornnunet(data, shape_new, SPACING_IN[::-1], SPACING_OUT[::-1], is_seg=is_seg,
                                           num_threads=os.cpu_count() or 1, force_separate_z=separate)
            return out[0].numpy() if hasattr(out, "numpy") else out[0]

        return run, edge_aligned

    if name == "monai-spacing":
        import torch
        from monai.data import MetaTensor
        from monai.transforms import Spacing

        torch.set_num_threads(os.cpu_count() or 1)
        tensor = MetaTensor(torch.from_numpy(array.astype(np.float32).T.copy())[None], affine=torch.tensor(g_in.affine_ras()))
        spacing = Spacing(pixdim=SPACING_OUT, mode="bilinear")
        holder = {}

        def run():
            out = spacing(tensor)
            holder["affine"] = out.affine.numpy()
            return out[0].numpy().T

        def grid(out):
            a = np.diag([-1.0, -1.0, 1.0, 1.0]) @ holder["affine"]  # RAS -> LPS
            return np.linalg.norm(a[:3, :3], axis=0), a[:3, 3]

        return run, grid

    raise KeyError(name)


def worker(args) -> int:
    array = None
    baseline = _rss_kb("VmRSS")
    import importlib.util

    need = {"nnunet": "nnunetv2", "monai": "monai", "sitk": "SimpleITK"}
    for prefix, module in need.items():
        if args.worker.startswith(prefix) and importlib.util.find_spec(module) is None:
            print(json.dumps({"skipped": f"{module} not installed"}))
            return 0
    array = np.load(args.data)
    run, grid = _tool(args.worker, array)
    baseline = _rss_kb("VmRSS") - array.nbytes // 1024  # imports done, input not counted twice
    times, out = [], None
    for i in range(args.repeats):
        del out
        out = None
        _reset_peak()
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = _rss_kb("VmHWM")
        if times[0] > SLOW_SECONDS:
            break
    out = np.asarray(out)
    spacing, origin = grid(out)
    nz = out.shape[0]
    slab = slice(nz // 2 - 8, nz // 2 + 8)
    np.save(args.result, np.ascontiguousarray(out[slab, ::2, ::2]).astype(np.float32))
    print(json.dumps({
        "times": times,
        "peak_mb": (peak - baseline) / 1024,
        "shape": list(out.shape),
        "dtype": str(out.dtype),
        "spacing": [float(v) for v in spacing],
        "origin": [float(v) for v in origin],
        "slab": [slab.start, slab.stop],
        "last_slice_mean": float(np.mean(out[-1], dtype=np.float64)),
        "labels": sorted(int(v) for v in np.unique(out[::4, ::4, ::4])) if "label" in args.worker or "seg" in args.worker else None,
    }))
    return 0


# -- the comparison ---------------------------------------------------------------------------------
def reference_correlation(coeffs: np.ndarray, result: dict, slab_values: np.ndarray) -> float:
    """Correlation of a tool's slab with the order-3 spline of the input at the tool's positions."""
    from scipy import ndimage

    k = np.arange(*result["slab"], dtype=float)
    j = np.arange(0, result["shape"][1], 2, dtype=float)
    i = np.arange(0, result["shape"][2], 2, dtype=float)
    spacing, origin = np.array(result["spacing"]), np.array(result["origin"])
    # physical position -> input continuous index, per axis (identity directions)
    zi = (origin[2] + k * spacing[2] - ORIGIN_IN[2]) / SPACING_IN[2]
    yi = (origin[1] + j * spacing[1] - ORIGIN_IN[1]) / SPACING_IN[1]
    xi = (origin[0] + i * spacing[0] - ORIGIN_IN[0]) / SPACING_IN[0]
    zz, yy, xx = np.meshgrid(zi, yi, xi, indexing="ij")
    ref = ndimage.map_coordinates(coeffs, [zz, yy, xx], order=3, prefilter=False, mode="mirror")
    return float(np.corrcoef(ref.ravel(), slab_values.ravel())[0, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 x 256 x 150 instead of 512 x 512 x 300")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool (median); slow tools run once")
    parser.add_argument("--tools", help="comma-separated subset of: " + ", ".join(n for n, _ in IMAGE_TOOLS + LABEL_TOOLS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    shape = (150, 256, 256) if args.quick else (300, 512, 512)
    tools = IMAGE_TOOLS + LABEL_TOOLS
    if args.tools:
        wanted = args.tools.split(",")
        tools = [t for t in tools if t[0] in wanted]
    from scipy import ndimage

    with tempfile.TemporaryDirectory(prefix="bench_resample_") as tmp:
        tmp = Path(tmp)
        image_path, label_path = make_inputs(shape, tmp)
        image = np.load(image_path)
        print(f"input: {shape[2]}x{shape[1]}x{shape[0]} int16 at {SPACING_IN} mm -> {SPACING_OUT} mm, "
              f"{os.cpu_count()} cores; repeats {args.repeats} (median)")
        t0 = time.perf_counter()
        coeffs = ndimage.spline_filter(image.astype(np.float32), order=3, output=np.float32, mode="mirror")
        print(f"(order-3 reference coefficients: {time.perf_counter() - t0:.1f} s)")
        input_last = float(image[-1].mean())
        results = {}
        for name, kind in tools:
            data = label_path if kind == "labels" else image_path
            out_path = tmp / f"{name}.npy"
            cmd = [sys.executable, __file__, "--worker", name, "--data", str(data), "--result", str(out_path),
                   "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                results[name] = {"skipped": f"failed: {last}"}
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if "skipped" not in r:
                r["kind"] = kind
                r["median"] = float(np.median(r["times"]))
                if kind != "labels":
                    r["corr"] = reference_correlation(coeffs, r, np.load(out_path))
                out_path.unlink(missing_ok=True)
            results[name] = r
            done = f"skipped ({r['skipped']})" if "skipped" in r else f"{r['median']:.3f} s"
            print(f"  {name}: {done}", flush=True)

        out_bytes = int(np.prod([round(n * s / t) for n, s, t in zip(shape[::-1], SPACING_IN, SPACING_OUT)])) * 4
        budget = (image.nbytes + out_bytes + image.size * 4) / 2**20
        print()
        print(f"peak memory budget (input + float32 output + one float32 working copy): {budget:.0f} MB; "
              f"input last z-slice mean {input_last:.1f}")
        header = f"{'tool':26} {'kind':10} {'time s':>8} {'x MedPrep':>9} {'peak MB':>8} {'corr ref3':>10} " \
                 f"{'shape (z,y,x)':>16} {'real spacing x,y,z mm':>26} {'origin x,y,z mm LPS':>28} {'last slice':>10}"
        print(header)
        for name, kind in tools:
            r = results[name]
            if "skipped" in r:
                print(f"{name:26} {kind:10} skipped: {r['skipped']}")
                continue
            base = results.get(BASELINE[kind], {})
            ratio = r["median"] / base["median"] if "median" in base else float("nan")
            corr = f"{r['corr']:.6f}" if "corr" in r else ("labels " + ",".join(map(str, r["labels"])))
            sp = ",".join(f"{v:.5f}" for v in r["spacing"])
            org = ",".join(f"{v:.3f}" for v in r["origin"])
            shp = "x".join(map(str, r["shape"]))
            print(f"{name:26} {kind:10} {r['median']:8.3f} {ratio:9.2f} {r['peak_mb']:8.0f} {corr:>10} {shp:>16} "
                  f"{sp:>26} {org:>28} {r['last_slice_mean']:10.1f}")
        print()
        print("targets: linear <= 0.2x SimpleITK; high order < 2 s with corr > 0.9999 to scipy order 3 "
              "(medprep-bspline-cubic-z; the default interpolates the 2.5 mm axis linearly); labels no slower than "
              "SimpleITK nearest; peak <= budget")
        checks = []
        if "median" in results.get("medprep-linear", {}) and "median" in results.get("sitk-linear", {}):
            checks.append(("linear vs SimpleITK", results["medprep-linear"]["median"] / results["sitk-linear"]["median"], "<= 0.2"))
        for n in ("medprep-bspline", "medprep-bspline-cubic-z"):
            if "median" in results.get(n, {}):
                checks.append((f"{n} time s", results[n]["median"], "< 2"))
        if "corr" in results.get("medprep-bspline-cubic-z", {}):
            checks.append(("cubic corr vs scipy order 3", results["medprep-bspline-cubic-z"]["corr"], "> 0.9999"))
        if "median" in results.get("medprep-label-linear", {}) and "median" in results.get("sitk-label-nearest", {}):
            checks.append(("label_linear vs SimpleITK nearest", results["medprep-label-linear"]["median"] / results["sitk-label-nearest"]["median"], "<= 1"))
        for n in ("medprep-linear", "medprep-bspline", "medprep-label-linear"):
            if "peak_mb" in results.get(n, {}):
                checks.append((f"{n} peak MB", results[n]["peak_mb"], f"<= {budget:.0f}"))
        for label, value, target in checks:
            print(f"  {label:36} {value:10.4f}   target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
