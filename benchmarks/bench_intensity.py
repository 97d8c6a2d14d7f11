"""Throughput and peak memory of MedPrep's intensity steps against nnU-Net and plain copies.

Run: ``python benchmarks/bench_intensity.py [--shape 300 512 512] [--repeats 5]``

Input: a 512 x 512 x 300 int16 CT-like volume (z, y, x), 157 MB. Contenders run round
robin ``--repeats`` times; the median wall time of each is reported, as

* GB/s of input bytes (int16), and GB/s of float32 voxels (the output size; this is the
  measure under which a plain copy of a float32 volume is "memory speed");
* the speed ratio to nnU-Net's own ``CTNormalization.run`` on the same array in the same run
  (> 1: faster than nnU-Net);
* peak memory traced by ``tracemalloc`` during one run (separate from the timed runs, as
  tracing slows allocation), against the budget of issue 4: input + output + one float32
  working copy.

Reference lines: ``memcpy`` copies a float32 volume into an existing one (pure memory speed);
``astype`` makes a fresh float32 copy of the int16 input — the floor for any step that has to
produce a new float32 output, page faults of the fresh memory included.

Issue 4 targets: intensity steps at >= 3 GB/s; peak memory <= input + output + one float32 copy.
Timings on a shared machine are noisy: compare the ratios measured in one run. MedPrep's block
work uses up to 4 threads (``MEDPREP_THREADS=1`` for one); nnU-Net's code is single-threaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from MedPrepLib.recipe import Recipe, run_recipe  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

CT_PROPS = {"mean": 83.69, "std": 301.09, "percentile_00_5": -987.0, "percentile_99_5": 1493.03}


def ct_like(shape, seed=0) -> np.ndarray:
    """Air around a body of soft tissue with some bone, plus noise; int16 HU."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.ogrid[:y, :x]
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.47 * x)) ** 2 <= 1
    bone = ((yy - 0.7 * y) / (0.05 * y)) ** 2 + ((xx - x / 2) / (0.05 * x)) ** 2 <= 1
    plane = np.where(body, 40, -1000).astype(np.int16)
    plane[bone] = 700
    out = np.empty(shape, np.int16)
    for k in range(z):
        noise = rng.integers(-30, 31, size=(y, x), dtype=np.int16)
        np.add(plane, noise, out=out[k])
    out[:, :, :8] = -2048  # out-of-field stripe
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return statistics.median(times)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del result
    return peak


def medprep(step: dict, volume: Volume):
    recipe = Recipe.from_dict({"version": 1, "steps": [step]})
    return lambda: run_recipe(recipe, volume).image.array


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    x = ct_like(tuple(args.shape))
    x.setflags(write=False)
    volume = Volume(x, spacing=(0.7, 0.7, 2.5))
    n = x.size
    f32 = x.astype(np.float32)
    dst = np.empty_like(f32)
    budget = x.nbytes + 2 * 4 * n  # input + output + one float32 working copy (output float32)

    contenders: list[tuple[str, object, int]] = [
        ("memcpy float32 -> existing", lambda: np.copyto(dst, f32), 0),
        ("astype int16 -> new float32", lambda: x.astype(np.float32), 4 * n),
        ("medprep clip_scale", medprep({"op": "clip_scale", "min": -1000, "max": 400}, volume), 4 * n),
        ("medprep window lung", medprep({"op": "window", "preset": "lung"}, volume), 4 * n),
        ("medprep window lung uint8", medprep({"op": "window", "preset": "lung", "output": "uint8"}, volume), n),
        ("medprep zscore", medprep({"op": "zscore"}, volume), 4 * n),
        ("medprep zscore nonzero", medprep({"op": "zscore", "mask": "nonzero"}, volume), 4 * n),
        ("medprep ct_normalization", medprep({"op": "ct_normalization", **CT_PROPS}, volume), 4 * n),
        ("medprep pad_to_air", medprep({"op": "pad_to_air"}, volume), 2 * n),
    ]
    try:
        from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
            CTNormalization,
            ZScoreNormalization,
        )

        ct = CTNormalization(use_mask_for_norm=False, intensityproperties=CT_PROPS)
        zs = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={})
        contenders += [
            ("nnU-Net CTNormalization", lambda: ct.run(x), 4 * n),
            ("nnU-Net ZScoreNormalization", lambda: zs.run(x), 4 * n),
        ]
    except ImportError:
        print("nnunetv2 not installed: no nnU-Net comparison")

    print(f"input {x.shape} (z, y, x) {x.dtype}: {x.nbytes / 1e6:.0f} MB; float32 volume {4 * n / 1e6:.0f} MB")
    print(f"memory budget (input + output + one float32 copy): {budget / 1e6:.0f} MB\n")
    # Round robin, so that load from other processes spreads over all contenders alike.
    samples: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for _ in range(args.repeats):
        for name, fn, _ in contenders:
            samples[name].append(median_time(fn, 1))
    times = {name: statistics.median(ts) for name, ts in samples.items()}
    reference = times.get("nnU-Net CTNormalization")
    header = f"{'contender':32s} {'ms':>7s} {'GB/s in':>8s} {'GB/s f32':>9s} {'vs nnU-Net':>10s} {'peak MB':>8s} {'<= budget':>9s}"
    print(header)
    print("-" * len(header))
    for name, fn, out_bytes in contenders:
        t = times[name]
        peak = peak_bytes(fn)
        in_rate = (f32.nbytes if name.startswith("memcpy") else x.nbytes) / t / 1e9
        ratio = f"{reference / t:9.2f}x" if reference else "       n/a"
        limit = x.nbytes + out_bytes + 4 * n
        ok = "yes" if peak <= limit else "NO"
        print(
            f"{name:32s} {t * 1e3:7.1f} {in_rate:8.2f} {4 * n / t / 1e9:9.2f} {ratio:>10s} {peak / 1e6:8.0f} {ok:>9s}"
        )
    print("\nTargets (issue 4): >= 3 GB/s; peak <= input + output + one float32 copy.")
    print("'GB/s in' counts int16 input bytes, 'GB/s f32' the float32 output bytes of the same voxels.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
