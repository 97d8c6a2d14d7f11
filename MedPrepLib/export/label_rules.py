"""An export's label rules: the one label table (or "the values found"), and the grid policy.

With a label map (``--label-map``) the table is fixed before the first case, and every case's
label must fit it. Without one, each case's label is checked against the open table of values
0-255 (named ``label_<value>``) and the dataset's table is made at the end from the values the
exported labels hold (:meth:`LabelRules.table`), so one pass over the cases suffices. nnU-Net's
rule that the values be 0, 1, 2 ... is checked then, with a hint to give a label map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ExportError
from ..volume import Volume
from .cases import VolumeSource
from .labels import GRID_POLICIES, LabelTable, parse_label_map, prepare_label, read_label_map

OPEN_TABLE_MAX = 255
"""Without a label map, label values 0 .. this are accepted (uint8 label files)."""


@lru_cache(maxsize=1)
def _open_table() -> LabelTable:
    return LabelTable.from_values(range(OPEN_TABLE_MAX + 1))


@dataclass(frozen=True)
class LabelRules:
    """How every case's label is checked and what the dataset's label table is.

    ``table``: the label map's table, or ``None`` (the values found name the labels).
    ``grid_policy``: ``"reject"`` or ``"resample"`` (see :func:`~.labels.prepare_label`).
    ``consecutive``: the format needs values 0, 1, 2 ... (nnU-Net).
    """

    table: LabelTable | None = None
    grid_policy: str = "reject"
    consecutive: bool = False

    @classmethod
    def from_options(cls, label_map: str | os.PathLike | dict | LabelTable | None, *, grid_policy: str = "reject",
                     consecutive: bool = False) -> LabelRules:  # fmt: skip
        """Rules from ``--label-map`` (a file, its parsed JSON, or a table) and the grid policy."""
        if grid_policy not in GRID_POLICIES:
            raise ExportError(f"unknown label grid policy {grid_policy!r}", hint="use " + " or ".join(GRID_POLICIES))
        if label_map is None or isinstance(label_map, LabelTable):
            table = label_map
        elif isinstance(label_map, dict):
            table = parse_label_map(label_map)
        else:
            table = read_label_map(label_map)
        if table is not None and consecutive:
            table.checked(consecutive=True)
        return cls(table, grid_policy, consecutive)

    def to_dict(self) -> dict:
        """The rules as the export plan records them."""
        return {"table": None if self.table is None else self.table.to_dict(), "grid_policy": self.grid_policy}

    def prepare(self, label: Volume, image: Volume) -> tuple[Volume, dict, list[str]]:
        """The case's label as written (on ``image``'s grid), its facts as a dict
        (``present``, ``voxels``, ``volumes_ml`` per label name, ``resampled``) and warnings."""
        table = self.table or _open_table()
        out, facts = prepare_label(label, image, table, grid_policy=self.grid_policy)
        d = facts.to_dict()
        if self.table is None:  # only the labels this case holds, not 255 empty names
            names = {table.name(v) for v in facts.present}
            d["voxels"] = {k: v for k, v in d["voxels"].items() if k in names}
            d["volumes_ml"] = {k: v for k, v in d["volumes_ml"].items() if k in names}
        warnings = d.pop("warnings")
        return out, d, warnings

    def present_values(self, label: VolumeSource, image: VolumeSource | None = None) -> tuple[int, ...]:
        """The non-zero values a case's label holds after the remap (for ``--stratify labels``,
        before the case is exported). ``image``: the case's first channel, which a label made
        from a segmentation object (``needs_image``) is placed on."""
        from .labels import found_values

        if isinstance(label, Volume):
            volume = label
        elif getattr(label, "needs_image", False):
            if image is None:
                raise ExportError("a label from a segmentation is made on its image, and no image was given")
            volume = label(image if isinstance(image, Volume) else image(), grid_policy=self.grid_policy)
        else:
            volume = label()
        values = found_values(volume)
        if self.table is not None:
            values = tuple(self.table.remap.get(v, v) for v in values)
        return tuple(sorted({v for v in values if v != 0}))

    def table_for(self, facts: Sequence[dict | None]) -> dict[str, int]:
        """The dataset's label table (name -> value), given the label facts of the exported cases."""
        if self.table is not None:
            return self.table.checked(consecutive=self.consecutive)
        found = sorted({v for f in facts if f for v in f.get("present", ())})
        table = LabelTable.from_values(found)
        if self.consecutive and list(table.values) != list(range(len(table.values))):
            raise ExportError(
                f"the labels hold the values {list(table.values)}, which are not consecutive (0, 1, 2 ...) as nnU-Net requires",
                hint='map them with a label map (--label-map), e.g. {"remap": {"3": 2}}',
            )
        return table.checked(consecutive=self.consecutive)
