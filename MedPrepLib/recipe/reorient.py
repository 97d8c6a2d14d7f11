"""Recipe step ``reorient``: permute and flip axes to an orientation code, never resampling.

``{"op": "reorient", "to": "RAS"}`` stores the voxels so that the index axes i, j, k point to
the named anatomical directions (codes as :func:`MedPrepLib.geometry.orientation_code`: each
letter is where that axis points *to*; identity direction = "LPS", nibabel's canonical = "RAS").
Each voxel keeps its value and its physical position (LPS mm): origin and direction are updated
to match. An oblique image goes to the closest code and stays oblique (its direction columns
are permuted and negated, never rotated), so nothing is interpolated.

The record holds the input and output grids and the permutation (``permutation[n]`` = input
index axis, (x, y, z) numbering, that became axis n; ``flips[n]`` whether it was reversed);
undoing applies the inverse permutation — exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..geometry import Geometry, direction_from_code
from ..processing.reorient import inverse_transform, orientation_transform, permute_array, permute_axes
from ..volume import Volume
from .base import Param, RunContext, Step, param_error


def _code(value, where: str) -> str:
    """An orientation code, upper case; a RecipeError naming 'to' otherwise."""
    if not isinstance(value, str):
        raise param_error(where, "to", f"must be an orientation code such as 'RAS' or 'LPS', got {value!r}")
    try:
        direction_from_code(value)
    except ValueError as exc:
        raise param_error(where, "to", f"is not valid: {exc}") from None
    return value.upper()


@dataclass(frozen=True)
class Reorient(Step):
    """Permute/flip the index axes to the orientation code ``to`` (see the module docstring)."""

    op = "reorient"
    parameters = (
        Param("to", "orientation code", "RAS", "", "where the index axes point: RAS, LPS, LAS... (ITK letters)", parse=_code),
    )
    geometric = True

    to: str = "RAS"



    def apply(self, image: Volume, label: Volume | None, ctx: RunContext) -> tuple[Volume, Volume | None, dict]:
        perm, flips = orientation_transform(image.direction, self.to)
        out_image = permute_axes(image, perm, flips)
        out_label = None
        if label is not None:
            out_label = Volume(permute_array(label.array, perm, flips), out_image.geometry, metadata=label.metadata)
        record = {
            "input_geometry": image.geometry.to_dict(),
            "output_geometry": out_image.geometry.to_dict(),
            "permutation": perm,
            "flips": flips,
        }
        return out_image, out_label, record

    def invert_label(self, label: Volume, record: dict) -> Volume:
        """The label with the recorded permutation undone, on the recorded input grid (exact)."""
        perm, flips = inverse_transform(record["permutation"], record["flips"])
        source = Geometry.from_dict(record["input_geometry"])
        return Volume(permute_array(label.array, perm, flips), source, metadata=label.metadata)
