"""Repeated images: within the training file, within the test file, and between the two.

A training image that appears twice can land in a training fold and in its validation fold (the
CV then scores a memorised image), and a test image identical to a training image says the split
leaks. An image repeats another when their mean absolute pixel difference is at most NEAR_MEAN_ABS
gray levels (0: exact copies). A group is one representative (its first row) and the images
within NEAR_MEAN_ABS of it: never a chain of near pairs drifting further and further apart.
Candidates are the images whose 4x4 thumbnails agree on one of several shifted quantisation grids
(an exact pair always does; a near pair almost always); each is compared with the representatives
of its bucket, not with every other image, so the time stays near-linear in the rows whatever the
size of the groups (docs/results.md gives the measured times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.layout import Workspace

if TYPE_CHECKING:
    from fmnist_kaggle.data.competition import Competition

NEAR_MEAN_ABS = 2.0  # gray levels (of 255): mean absolute pixel difference of a near-exact pair


GRID = 32  # quantisation of the 4x4 thumbnails (means of 7x7 blocks) that buckets candidates
OFFSETS = (0, 8, 16, 24)  # shifted grids: a near pair split by one grid's boundary meets in another


def _bucket_keys(images: np.ndarray, offset: int) -> np.ndarray:
    thumbs = images.reshape(len(images), 4, 7, 4, 7).astype(np.float32).mean(axis=(2, 4)).reshape(len(images), -1)
    q = np.ascontiguousarray(np.floor((thumbs + offset) / GRID).astype(np.uint8))
    return q.view(np.dtype((np.void, q.shape[1]))).ravel()


def group_rows(images: np.ndarray) -> np.ndarray:
    """A group id per row (its group's first row): each group is a representative and the rows
    within NEAR_MEAN_ABS of it. Rows are taken in order; a row joins the nearest representative of
    its bucket within the threshold (on any of the shifted grids), else it represents a group."""
    if images.shape[1:] != (28, 28):
        raise ValueError(f"expected (N, 28, 28) images, got {images.shape}")
    n = len(images)
    rep = np.arange(n)  # each row's representative (itself until it joins another)
    size = np.ones(n, dtype=np.int64)  # members of the group each row represents
    flat = images.reshape(n, -1).astype(np.int16)
    for offset in OFFSETS:
        key = _bucket_keys(images, offset)
        order = np.argsort(key, kind="stable")  # within a bucket, rows in order
        k = key[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        for s_, e in zip(starts, np.r_[starts[1:], n], strict=True):
            if e - s_ > 1:
                _join_bucket(order[s_:e], flat, rep, size)
    return _first_rows(rep)


def _join_bucket(members: np.ndarray, flat: np.ndarray, rep: np.ndarray, size: np.ndarray) -> None:
    """Rows of one bucket that are alone join the nearest representative present within the
    threshold; the others of them become representatives."""
    reps = [int(m) for m in members if rep[m] == m and size[m] > 1]
    for m in members:
        m = int(m)
        if rep[m] != m or size[m] > 1:  # in a group already (a member, or a representative with members)
            continue
        if reps:
            dist = np.abs(flat[reps] - flat[m]).mean(axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= NEAR_MEAN_ABS and reps[j] != m:
                rep[m], size[reps[j]], size[m] = reps[j], size[reps[j]] + 1, 0
                continue
        reps.append(m)


def _first_rows(rep: np.ndarray) -> np.ndarray:
    """Group ids as each group's first row (a representative may come after a member it took)."""
    first = np.full(len(rep), len(rep), dtype=np.int64)
    np.minimum.at(first, rep, np.arange(len(rep)))
    return first[rep]


@dataclass(frozen=True)
class DuplicateReport:
    train_groups: int  # groups of 2+ training rows
    train_rows: int  # training rows in such groups
    conflicting_groups: int  # of those, groups whose labels disagree
    test_groups: int
    test_rows: int
    train_test_rows: int  # test rows with a (near-)copy among the training rows
    examples: dict[str, list[list[int]]]  # a few groups of each kind, as row numbers (0-based)

    def to_dict(self) -> dict[str, object]:
        counts = {
            "train_groups": self.train_groups,
            "train_rows": self.train_rows,
            "conflicting_label_groups": self.conflicting_groups,
            "test_groups": self.test_groups,
            "test_rows": self.test_rows,
            "train_test_rows": self.train_test_rows,
        }
        threshold = f"exact bytes, or a mean absolute difference of at most {NEAR_MEAN_ABS:g} gray levels"
        return {"threshold": threshold} | counts | {"examples": self.examples}


def _multi(groups: np.ndarray) -> list[np.ndarray]:
    roots, counts = np.unique(groups, return_counts=True)
    return [np.flatnonzero(groups == r) for r in roots[counts > 1]]


def find_duplicates(train: np.ndarray, labels: np.ndarray | None, test: np.ndarray | None) -> DuplicateReport:
    """Duplicate groups within train (with how many disagree on the label), within test, and test
    rows that repeat a training image: one grouping of both files together."""
    n = len(train)
    both = group_rows(train if test is None or not len(test) else np.concatenate([train, test]))
    train_groups = _multi(both[:n])
    conflicting = [g for g in train_groups if labels is not None and len(set(labels[g].tolist())) > 1]
    test_groups = _multi(both[n:]) if len(both) > n else []
    train_roots = set(both[:n].tolist())
    across = [[i] for i in range(len(both) - n) if both[n + i] in train_roots]
    examples = {
        "train": [g.tolist() for g in train_groups[:5]],
        "conflicting": [g.tolist() for g in conflicting[:5]],
        "test": [g.tolist() for g in test_groups[:5]],
        "train_test": across[:5],
    }
    return DuplicateReport(
        train_groups=len(train_groups),
        train_rows=int(sum(len(g) for g in train_groups)),
        conflicting_groups=len(conflicting),
        test_groups=len(test_groups),
        test_rows=int(sum(len(g) for g in test_groups)),
        train_test_rows=len(across),
        examples=examples,
    )


def duplicates_check(comp: Competition, ws: Workspace) -> dict[str, object]:
    """`fkaggle data check`'s duplicates, also written to the workspace for the report."""
    test = comp.test_set
    report = find_duplicates(comp.train_set.images, comp.train_set.labels, None if test is None else test.images)
    out = report.to_dict()
    atomic.write_json(ws.duplicates_json, out)
    return out
