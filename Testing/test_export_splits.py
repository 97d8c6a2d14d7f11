"""Patient-level splits on cohorts with several studies per patient.

No patient is in two folds or in both train and test; the result is the same for any input
order; stratification balances a column (or label presence) across folds and the test part;
fixed splits are held for the whole patient; unlabelled cases go to test; the folds come out as
nnU-Net's splits_final.json list.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export.cases import Case
from MedPrepLib.export.splits import LABEL_PRESENCE, SplitCase, make_splits, split_table
from MedPrepLib.volume import Volume


def cohort(n_patients=30, seed=0, strata=("A", "B"), weights=(0.7, 0.3)):
    """1-4 studies per patient; a patient's studies share its site."""
    rng = random.Random(seed)
    cases, n = [], 0
    for p in range(n_patients):
        site = rng.choices(strata, weights)[0]
        for _ in range(rng.randint(1, 4)):
            n += 1
            cases.append(SplitCase(f"case_{n:04d}", patient=f"MRN{p:05d}", stratum=site))
    return cases


def patient_of(cases):
    return {c.case_id: c.patient for c in cases}


def check_patient_level(cases, splits):
    owner, table = patient_of(cases), split_table(splits)
    places = defaultdict(set)  # (split, fold) of each patient's labelled cases
    for case in (c.case_id for c in cases if c.labelled):
        places[owner[case]].add(table[case])
    assert all(len(p) == 1 for p in places.values()), places
    assert sorted(splits.test + splits.train) == sorted(c.case_id for c in cases)
    assert not set(splits.test) & set(splits.train)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_patient_in_two_folds_or_in_train_and_test(seed):
    cases = cohort(seed=seed)
    splits = make_splits(cases, folds=5, test_fraction=0.2, seed=seed)
    check_patient_level(cases, splits)
    n_patients = len({c.patient for c in cases})
    test_patients = {c.patient for c in cases if c.case_id in splits.test}
    assert len(test_patients) == round(0.2 * n_patients)  # the fraction counts patients
    nnunet = splits.nnunet_splits()
    assert len(nnunet) == 5
    for fold in nnunet:
        assert sorted(fold["train"] + fold["val"]) == list(splits.train) and not set(fold["train"]) & set(fold["val"])
        assert not {patient_of(cases)[c] for c in fold["train"]} & {patient_of(cases)[c] for c in fold["val"]}


def test_deterministic_whatever_the_input_order():
    cases = cohort(seed=3)
    reference = make_splits(cases, folds=4, test_fraction=0.25, seed=11)
    for shuffle_seed in range(5):
        shuffled = list(cases)
        random.Random(shuffle_seed).shuffle(shuffled)
        assert make_splits(shuffled, folds=4, test_fraction=0.25, seed=11) == reference
    assert make_splits(cases, folds=4, test_fraction=0.25, seed=12) != reference  # the seed matters


def test_folds_are_balanced_in_cases_and_strata():
    cases = cohort(n_patients=60, seed=5)
    splits = make_splits(cases, folds=5, seed=0)
    stratum = {c.case_id: c.stratum for c in cases}
    sizes = [len(f) for f in splits.folds]
    assert max(sizes) - min(sizes) <= 4  # a patient holds at most 4 studies
    for s in ("A", "B"):
        counts = [sum(stratum[c] == s for c in f) for f in splits.folds]
        assert max(counts) - min(counts) <= 4, (s, counts)
    # without stratification, the rare stratum may bunch up; with it, each fold has its share
    share = Counter(stratum.values())["B"] / len(cases)
    for fold in splits.folds:
        assert abs(sum(stratum[c] == "B" for c in fold) / len(fold) - share) < 0.2


def test_test_part_is_stratified():
    cases = cohort(n_patients=40, seed=9, weights=(0.5, 0.5))
    splits = make_splits(cases, folds=3, test_fraction=0.3, seed=2)
    site = {}
    for c in cases:
        site[c.patient] = c.stratum
    test_patients = {c.patient for c in cases if c.case_id in splits.test}
    by_site = Counter(site[p] for p in test_patients)
    totals = Counter(site.values())
    for s in ("A", "B"):
        assert abs(by_site[s] - 0.3 * totals[s]) <= 1, (by_site, totals)


def test_stratify_by_label_presence_from_cases():
    volume = Volume(np.zeros((2, 2, 2), np.int16))
    cases = []
    for n in range(20):
        case = Case(f"case_{n:04d}", patient=f"P{n}", images={"CT": volume}, label=volume)
        present = {1} if n % 4 == 0 else set()  # one case in four holds a lesion
        cases.append(SplitCase.from_case(case, stratify=LABEL_PRESENCE, labels_present=present))
    assert Counter(c.stratum for c in cases) == {"1": 5, "empty": 15}
    splits = make_splits(cases, folds=5, seed=0)
    for fold in splits.folds:
        assert sum(int(c[5:]) % 4 == 0 for c in fold) == 1  # each fold holds one lesion case
    with pytest.raises(ExportError, match="no column 'site'"):
        SplitCase.from_case(case, stratify="site")
    row = Case("case_0100", patient="P", images={"CT": volume}, columns={"site": "north"})
    assert SplitCase.from_case(row, stratify="site").stratum == "north"


def test_fixed_splits_hold_for_the_whole_patient():
    cases = [
        SplitCase("a1", "P1", split="test"), SplitCase("a2", "P1"),  # P1: one study marked test -> both test
        SplitCase("b1", "P2", split="train"), SplitCase("b2", "P2"),  # P2: marked train -> train
        *[SplitCase(f"c{n}", f"Q{n}") for n in range(8)],
    ]  # fmt: skip
    splits = make_splits(cases, folds=2, test_fraction=0.5, seed=0)
    assert {"a1", "a2"} <= set(splits.test)
    assert {"b1", "b2"} <= set(splits.train) and splits.fold_of("b1") == splits.fold_of("b2")
    assert len({c.patient for c in cases if c.case_id in splits.test}) == 5  # half of 10 patients, P1 included
    with pytest.raises(ExportError, match="marked both 'train' and 'test'") as err:
        make_splits([SplitCase("x1", "MRN-SECRET", split="train"), SplitCase("x2", "MRN-SECRET", split="test")])
    assert "MRN-SECRET" not in str(err.value)  # messages name cases, never the patient key


def test_unlabelled_cases_go_to_test():
    cases = [SplitCase(f"l{n}", f"P{n}") for n in range(4)]
    cases += [SplitCase("u1", "P0", labelled=False), SplitCase("u2", "Z", labelled=False)]
    splits = make_splits(cases, folds=2, seed=0)
    assert splits.test == ("u1", "u2")
    assert splits.split_of("u1") == "test" and splits.fold_of("u1") is None
    # u1's patient trains: said, by case id only
    assert len(splits.warnings) == 1 and splits.warnings[0].startswith("u1: no label") and "P0" not in splits.warnings[0]
    with pytest.raises(ExportError, match="marked 'train' but has no label"):
        SplitCase("u3", "P9", labelled=False, split="train")
    # an inference set: no labels, no folds
    only = make_splits([SplitCase("u1", "A", labelled=False)], folds=5)
    assert only.folds == () and only.nnunet_splits() == [] and only.test == ("u1",)


def test_refusals():
    cases = [SplitCase(f"c{n}", f"P{n // 3}") for n in range(9)]  # three patients
    with pytest.raises(ExportError, match="3 training patient"):
        make_splits(cases, folds=5)
    with pytest.raises(ExportError, match="at least 2"):
        make_splits(cases, folds=1)
    with pytest.raises(ExportError, match="test fraction"):
        make_splits(cases, test_fraction=1.0)
    with pytest.raises(ExportError, match="repeat"):
        make_splits([SplitCase("c1", "P1"), SplitCase("c1", "P2")], folds=2)


def test_adding_a_patient_keeps_the_others_test_draw():
    cases = cohort(n_patients=50, seed=4, strata=("",), weights=(1,))
    before = set(make_splits(cases, folds=5, test_fraction=0.2, seed=1).test)
    grown = cases + [SplitCase("case_9999", "MRN99999")]
    after = set(make_splits(grown, folds=5, test_fraction=0.2, seed=1).test)
    assert len(before - after) <= 4  # at most one patient's studies change side
