"""Reorientation: permute and flip the index axes of a volume, never resampling.

Every voxel keeps its value and its physical position (LPS mm); only the order in which the
array stores the voxels changes, and the geometry (size, spacing, origin, direction) with it.
An oblique volume goes to the *closest* orientation code and stays oblique: its direction
columns are permuted and negated, not rotated.

``perm`` and ``flips`` describe the change in (x, y, z) index-axis terms: new index axis ``n``
is old axis ``perm[n]``, reversed when ``flips[n]``.

>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> v = Volume(np.arange(24).reshape(2, 3, 4), spacing=(1, 2, 3))
>>> r = reorient(v, "RAS")
>>> r.geometry.orientation, r.spacing, r.origin
('RAS', (1.0, 2.0, 3.0), (3.0, 4.0, 0.0))
>>> bool(np.allclose(r.geometry.index_to_physical((0, 0, 0)), v.geometry.index_to_physical((3, 2, 0))))
True
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ..geometry import Geometry, direction_from_code, orientation_code
from ..volume import Volume

_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}


def orientation_transform(direction, code: str) -> tuple[list[int], list[bool]]:
    """``(perm, flips)`` taking a grid with ``direction`` to the orientation ``code``.

    ``code`` is validated by :func:`~MedPrepLib.geometry.direction_from_code` (ValueError).
    """
    target = direction_from_code(code)
    code = code.upper()
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    current = orientation_code(direction)
    perm, flips = [], []
    for letter in code:
        for axis, have in enumerate(current):
            if have == letter or have == _OPPOSITE[letter]:
                perm.append(axis)
                flips.append(have != letter)
                break
    if orientation_code(_permuted_direction(direction, perm, flips)) == code:
        return perm, flips
    # An oblique grid on a tie (an axis at exactly 45 degrees between two patient axes): the
    # closest code depends on the column order, so the natural permutation can come out under
    # another code, and reorienting again would permute again. Take the signed permutation best
    # aligned with ``code`` — among those that read as ``code`` afterwards if any does, else among
    # all — preferring the identity on ties, so that reorienting again is a no-op.
    return _best_aligned(direction, target, code, named=True) or _best_aligned(direction, target, code, named=False)


def _best_aligned(direction: np.ndarray, target: np.ndarray, code: str, *, named: bool):
    best, best_score = None, -np.inf
    for candidate in itertools.permutations(range(3)):  # identity first
        for signs in itertools.product((False, True), repeat=3):  # no flip first
            d = _permuted_direction(direction, candidate, signs)
            if named and orientation_code(d) != code:
                continue
            score = float(np.sum(d * target))
            if score > best_score + 1e-9:
                best, best_score = (list(candidate), list(signs)), score
    return best


def _permuted_direction(direction: np.ndarray, perm: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    return np.stack([direction[:, a] * (-1.0 if f else 1.0) for a, f in zip(perm, flips)], axis=1)


def inverse_transform(perm: Sequence[int], flips: Sequence[bool]) -> tuple[list[int], list[bool]]:
    """The ``(perm, flips)`` that undoes ``(perm, flips)``."""
    inv = [0, 0, 0]
    inv_flips = [False, False, False]
    for new, old in enumerate(perm):
        inv[old] = new
        inv_flips[old] = bool(flips[new])
    return inv, inv_flips


def permuted_geometry(geometry: Geometry, perm: Sequence[int], flips: Sequence[bool]) -> Geometry:
    """The grid after permuting/flipping index axes; each voxel keeps its physical position."""
    size = [geometry.size[a] for a in perm]
    spacing = [geometry.spacing[a] for a in perm]
    columns = [geometry.direction[:, a] * (-1.0 if f else 1.0) for a, f in zip(perm, flips)]
    first = np.zeros(3)
    for a, f in zip(perm, flips):
        if f:
            first[a] = geometry.size[a] - 1
    origin = geometry.index_to_physical(first)
    return Geometry(size=size, spacing=spacing, origin=tuple(origin), direction=np.stack(columns, axis=1))


def permute_array(array: np.ndarray, perm: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    """Permute/flip a (z, y, x[, c]) array as :func:`permuted_geometry` does its grid (a copy)."""
    # numpy axis of index axis a is 2 - a; channels (axis 3) stay last
    axes = [2 - perm[2 - k] for k in range(3)] + list(range(3, array.ndim))
    out = np.transpose(array, axes)
    flip_axes = tuple(2 - n for n in range(3) if flips[n])
    if flip_axes:
        out = np.flip(out, flip_axes)
    return np.ascontiguousarray(out)


def permute_axes(volume: Volume, perm: Sequence[int], flips: Sequence[bool]) -> Volume:
    """The volume with its index axes permuted/flipped (no interpolation)."""
    geometry = permuted_geometry(volume.geometry, perm, flips)
    return Volume(permute_array(volume.array, perm, flips), geometry, metadata=volume.metadata)


def reorient(volume: Volume, code: str) -> Volume:
    """The volume in orientation ``code`` (e.g. "RAS", "LPS"), voxels moved, never resampled."""
    perm, flips = orientation_transform(volume.direction, code)
    if perm == [0, 1, 2] and not any(flips):
        return volume
    return permute_axes(volume, perm, flips)
