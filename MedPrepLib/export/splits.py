"""Patient-level splits: a test set and K cross-validation folds in which no patient is divided.

All studies of one patient go to the same part (train or test) and, in train, to the same fold,
so no scan of a validation or test patient has been seen in training (nnU-Net's own split is by
case: it leaks patients with several studies across folds).

The rules, in order:

1. A case without a label goes to the test part (it cannot be trained on).
2. A fixed ``split`` (a cohort table's ``split`` column) holds for the whole patient: one of
   its labelled cases marked ``test`` sends all its labelled cases to test, one marked ``train``
   keeps them in train; a patient marked both ways is an error.
3. ``test_fraction`` F: ``round(F * patients)`` of the labelled patients (at least one when F > 0
   and there are two or more) are in test, fixed ones included; the others are drawn from each
   stratum in proportion to its size.
4. The training patients are dealt into K folds stratum by stratum, larger patients first, each
   to the fold holding the fewest cases of that stratum (then the fewest cases, then the lowest
   fold): folds are balanced in cases and in strata as well as whole patients allow.

A patient's stratum is the set of its labelled cases' strata (a column value, or which labels
are present). Draws and ties follow SHA-256(seed, patient key): the result depends only on the
cases and the seed, never on their order, and adding a patient does not reshuffle the others.
Patient keys are never written or printed; messages name case ids.

>>> cases = [SplitCase(f"case_{n:04d}", patient=f"p{n // 2}") for n in range(1, 9)]  # 0002+0003 one patient...
>>> splits = make_splits(cases, folds=2, seed=0)
>>> splits.folds
(('case_0004', 'case_0005', 'case_0006', 'case_0007'), ('case_0001', 'case_0002', 'case_0003', 'case_0008'))
>>> splits.nnunet_splits()[0]["val"] == sorted(splits.folds[0])
True
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ..errors import ExportError
from .cases import SPLITS, Case, check_case_id

LABEL_PRESENCE = "labels"
"""``stratify`` value meaning: balance by which labels a case's label volume holds."""


@dataclass(frozen=True)
class SplitCase:
    """What the split needs to know of one case.

    ``patient`` is the opaque patient key (never written), ``labelled`` whether the case has a
    label, ``split`` a fixed ``"train"``/``"test"`` or ``None``, ``stratum`` the value to
    balance on (``""``: no stratification).
    """

    case_id: str
    patient: str
    labelled: bool = True
    split: str | None = None
    stratum: str = ""

    def __post_init__(self):
        check_case_id(self.case_id)
        if self.split not in (None, *SPLITS):
            raise ExportError(f"case {self.case_id}: split {self.split!r} is not 'train', 'test' or empty")
        if self.split == "train" and not self.labelled:
            raise ExportError(
                f"case {self.case_id} is marked 'train' but has no label",
                hint="give it a label, or mark it 'test'",
            )

    @classmethod
    def from_case(
        cls,
        case: Case,
        *,
        stratify: str | None = None,
        labels_present: Collection[int] | bool | None = None,
    ) -> SplitCase:
        """The split's view of a :class:`~.cases.Case`.

        ``stratify`` is a column of ``case.columns``, or :data:`LABEL_PRESENCE` (``"labels"``)
        to balance by label content; then ``labels_present`` says which non-zero label values
        the case's label volume holds (or just whether it holds any).
        """
        stratum = ""
        if stratify == LABEL_PRESENCE:
            if case.labelled:
                if labels_present is None:
                    raise ExportError(f"case {case.case_id}: stratifying by labels needs the labels it holds")
                stratum = _presence(labels_present)
        elif stratify is not None:
            if stratify not in case.columns:
                known = ", ".join(sorted(case.columns)) or "none"
                raise ExportError(
                    f"case {case.case_id} has no column {stratify!r} to stratify by",
                    hint=f"columns: {known}; or stratify by '{LABEL_PRESENCE}'",
                )
            stratum = case.columns[stratify]
        return cls(case.case_id, case.patient, case.labelled, case.split, stratum)


def _presence(labels_present: Collection[int] | bool) -> str:
    if isinstance(labels_present, bool):
        return "foreground" if labels_present else "empty"
    values = sorted(int(v) for v in labels_present if int(v) != 0)
    return ",".join(map(str, values)) if values else "empty"


@dataclass(frozen=True)
class Splits:
    """The test part and the folds: ``folds[k]`` are the cases validated in fold k (sorted).

    Training cases are those in the folds; every other case is in ``test``. ``warnings`` name
    case ids only.
    """

    test: tuple[str, ...]
    folds: tuple[tuple[str, ...], ...]
    warnings: tuple[str, ...] = ()

    @property
    def train(self) -> tuple[str, ...]:
        """Every training case, sorted."""
        return tuple(sorted(c for fold in self.folds for c in fold))

    def split_of(self, case_id: str) -> str:
        """``"train"`` or ``"test"``."""
        if case_id in self.test:
            return "test"
        if any(case_id in fold for fold in self.folds):
            return "train"
        raise KeyError(case_id)

    def fold_of(self, case_id: str) -> int | None:
        """The fold a training case is validated in; ``None`` for a test case."""
        for k, fold in enumerate(self.folds):
            if case_id in fold:
                return k
        if case_id in self.test:
            return None
        raise KeyError(case_id)

    def nnunet_splits(self) -> list[dict[str, list[str]]]:
        """nnU-Net's ``splits_final.json``: one ``{"train": [...], "val": [...]}`` per fold."""
        train = self.train
        splits = []
        for fold in self.folds:
            val = set(fold)
            splits.append({"train": [c for c in train if c not in val], "val": sorted(val)})
        return splits


def _draw(seed: int, patient: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{patient}".encode()).digest()


def test_count(test_fraction: float, n_patients: int) -> int:
    """How many of ``n_patients`` labelled patients rule 3 puts in the test part."""
    count = int(test_fraction * n_patients + 0.5)
    if test_fraction > 0 and count == 0 and n_patients >= 2:
        count = 1
    return count


def check_split_options(folds: int, test_fraction: float) -> None:
    """Refuse a number of folds below 2 and a test fraction outside [0, 1) (ExportError)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ExportError(f"{folds!r} folds: cross-validation needs at least 2 (--folds)")
    if not 0.0 <= test_fraction < 1.0:
        raise ExportError(f"test fraction {test_fraction!r} is not in [0, 1) (--test-fraction)")


def make_splits(
    cases: Iterable[SplitCase], *, folds: int = 5, test_fraction: float = 0.0, seed: int = 0
) -> Splits:
    """Split ``cases`` by patient into a test part and ``folds`` folds; see the module doc."""
    check_split_options(folds, test_fraction)
    cases = sorted(cases, key=lambda c: c.case_id)
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ExportError(f"case ids repeat: {', '.join(repeated[:5])}")

    by_patient: dict[str, list[SplitCase]] = defaultdict(list)
    for case in cases:
        by_patient[case.patient].append(case)
    test: set[str] = {c.case_id for c in cases if not c.labelled}
    fixed: dict[str, str | None] = {}
    stratum: dict[str, str] = {}
    for patient, group in by_patient.items():
        labelled = [c for c in group if c.labelled]
        if not labelled:
            continue
        hints = {c.split for c in labelled if c.split}
        if len(hints) > 1:
            raise ExportError(
                f"cases {', '.join(c.case_id for c in labelled)} are one patient's, marked both 'train' and 'test'",
                hint="a patient's studies must all be in one part: fix the split column",
            )
        fixed[patient] = hints.pop() if hints else None
        stratum[patient] = "|".join(sorted({c.stratum for c in labelled}))

    # the test part: fixed test patients, then draws from the strata in proportion to their size
    patients = sorted(fixed, key=lambda p: _draw(seed, p))
    target = test_count(test_fraction, len(patients))
    test_patients = [p for p in patients if fixed[p] == "test"]
    size: dict[str, int] = defaultdict(int)
    drawn: dict[str, int] = defaultdict(int)
    free: dict[str, list[str]] = defaultdict(list)
    for p in patients:
        size[stratum[p]] += 1
        if fixed[p] == "test":
            drawn[stratum[p]] += 1
        elif fixed[p] is None:
            free[stratum[p]].append(p)
    for _ in range(max(0, target - len(test_patients))):
        open_strata = [s for s in sorted(free) if free[s]]
        if not open_strata:
            break
        s = max(open_strata, key=lambda s: (target * size[s] / len(patients) - drawn[s], size[s]))
        test_patients.append(free[s].pop(0))
        drawn[s] += 1
    for p in test_patients:
        test.update(c.case_id for c in by_patient[p] if c.labelled)

    # the folds
    train_patients = [p for p in patients if p not in set(test_patients)]
    if patients and not train_patients:
        raise ExportError(
            "no labelled patient is left for training",
            hint="lower the test fraction (--test-fraction) or mark fewer cases 'test'",
        )
    if 0 < len(train_patients) < folds:
        raise ExportError(
            f"{len(train_patients)} training patient(s) cannot fill {folds} folds",
            hint=f"use --folds {max(2, len(train_patients))} or fewer, or add labelled patients",
        )
    fold_cases: list[list[str]] = [[] for _ in range(folds if train_patients else 0)]
    per_stratum: dict[str, list[int]] = defaultdict(lambda: [0] * folds)
    groups: dict[str, list[str]] = defaultdict(list)
    for p in train_patients:
        groups[stratum[p]].append(p)
    warnings: list[str] = []
    for s in sorted(groups, key=lambda s: (-len(groups[s]), s)):
        for p in sorted(groups[s], key=lambda p: (-sum(c.labelled for c in by_patient[p]), _draw(seed, p))):
            members = [c.case_id for c in by_patient[p] if c.labelled]
            k = min(range(folds), key=lambda k: (per_stratum[s][k], len(fold_cases[k]), k))
            fold_cases[k].extend(members)
            per_stratum[s][k] += len(members)
            unlabelled = [c.case_id for c in by_patient[p] if not c.labelled]
            if unlabelled:
                warnings.append(
                    f"{', '.join(unlabelled)}: no label, so in the test part, while other studies of the same "
                    f"patient train ({', '.join(members)}); use it for inference only, not to evaluate"
                )
    if len(groups) > 1:
        for s, counts in sorted(per_stratum.items()):
            if max(counts) - min(counts) > 1 and len(groups[s]) >= folds:
                warnings.append(f"stratum {s!r} is spread {counts} cases over the folds (patients with many studies)")
    return Splits(
        test=tuple(sorted(test)),
        folds=tuple(tuple(sorted(f)) for f in fold_cases),
        warnings=tuple(sorted(warnings)),
    )


def split_table(splits: Splits) -> Mapping[str, tuple[str, int | None]]:
    """``{case id: (split, fold)}`` for every case, sorted by case id."""
    table = {c: ("test", None) for c in splits.test}
    table.update({c: ("train", k) for k, fold in enumerate(splits.folds) for c in fold})
    return dict(sorted(table.items()))
