"""Headless smoke test of the MedPrep module inside a real 3D Slicer (no window, no user).

Run it from a checkout (no build needed) or with the extension installed::

    Slicer --no-main-window --python-script Testing/Slicer/batch_smoke.py

Slicer executes the script in its ``__main__`` namespace (``__name__ == "__main__"``, with
``__file__`` set); imported by anything else (pytest's doctest collection) it does nothing.

It imports the module as a batch user would, builds an oblique, anisotropic volume, runs it
through ``MedPrepLogic`` (no progress callback) without and with a recipe file, exports it,
reads the file back with MedPrepLib and with Slicer, and runs the module's own self-test. Exit status 0 when everything passed,
1 otherwise (the traceback goes to stderr).
"""

import json
import os
import sys
import tempfile
import traceback


def _checkoutModuleDir() -> str:
    script = globals().get("__file__") or sys.argv[0]
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(script)))), "MedPrep")


def importMedPrep():
    """The MedPrep module file: the installed/registered one, else the one of this checkout."""
    try:
        import MedPrep
    except ImportError:
        sys.path.insert(0, _checkoutModuleDir())
        import MedPrep
    return MedPrep


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def main() -> int:
    import numpy as np
    import slicer
    import vtk

    MedPrep = importMedPrep()
    from MedPrepCore import SampleVolumes, VolumeNodes

    from MedPrepLib.imageio import read_image

    print(f"MedPrep module: {MedPrep.__file__}")
    slicer.mrmlScene.Clear()
    logic = MedPrep.MedPrepLogic()
    volume = SampleVolumes.obliqueVolume(np.int16)
    inputVolume = VolumeNodes.nodeFromVolume(slicer.mrmlScene, volume, "MedPrep batch smoke")

    outputVolume = logic.process(inputVolume)
    check(np.array_equal(slicer.util.arrayFromVolume(outputVolume), volume.array), "process changed the voxels")
    check(logic.volume(outputVolume).geometry == volume.geometry, "process changed the grid")

    with tempfile.TemporaryDirectory() as folder:
        recipePath = os.path.join(folder, "recipe.json")
        with open(recipePath, "w") as f:
            json.dump({"version": 1, "steps": [{"op": "clip_scale", "min": -1000, "max": 400}]}, f)
        scaled = slicer.util.arrayFromVolume(logic.process(inputVolume, recipePath))
        expected = np.clip((volume.array + 1000.0) / 1400.0, 0.0, 1.0)
        check(np.allclose(scaled, expected, atol=1e-6), "the recipe file was not applied as written")

        path = logic.exportVolume(inputVolume, folder, outputFormat=".nii.gz")
        back = read_image(path)
        check(np.array_equal(back.array, volume.array), f"{path} does not hold the exported voxels")
        check(back.geometry.isclose(volume.geometry), f"{path} has grid {back.geometry}, expected {volume.geometry}")

        loaded = slicer.util.loadVolume(str(path))
        check(np.array_equal(slicer.util.arrayFromVolume(loaded), volume.array), "Slicer reads other voxels")
        ijkToRAS = vtk.vtkMatrix4x4()
        loaded.GetIJKToRASMatrix(ijkToRAS)
        difference = np.abs(slicer.util.arrayFromVTKMatrix(ijkToRAS) - volume.geometry.ijk_to_ras()).max()
        check(difference < 1e-3, f"Slicer reads the exported grid {difference:.3g} mm off")

    MedPrep.MedPrepTest().runTest()
    print("MedPrep batch smoke test passed")
    return 0


def runAndExit() -> None:
    """Run :func:`main` and end Slicer with its status (1 and the traceback on any error)."""
    import slicer

    try:
        status = main()
    except Exception:
        traceback.print_exc()
        status = 1
    slicer.util.exit(status)


if __name__ == "__main__":
    runAndExit()
