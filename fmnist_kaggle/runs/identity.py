"""A run's identity, and the one check that two things share it.

A run is recorded under its identity: the fingerprints of its training data (images, labels
and label values, so the classes too), its fold assignment and its test file, its teachers'
predictions when it learned from pseudo-labels, its teacher's models when it was distilled, and
its semantic config. Folds and seeds must match their run's whole identity; runs that are
blended, used as teachers or turned into a submission must match in what that use needs. Every
message names the difference and its fix.
"""

from __future__ import annotations

from typing import Any

from fmnist_kaggle.errors import FkaggleError

# key -> (what it is, what to do when two runs differ in it)
FINGERPRINTS: dict[str, tuple[str, str]] = {
    "data_fingerprint": ("training data", "train them on the same data (the same --train file or competition)"),
    "folds_fingerprint": (
        "fold assignment",
        "their validation rows would leak into each other's CV estimate; retrain "
        "with the same --folds/--fold-seed (and --subset)",
    ),
    "test_fingerprint": (
        "test file",
        "they predicted different test files; use runs of one test file and pass "
        "--test FILE when it is not the competition's (`fkaggle predict RUN --test "
        "FILE` predicts a run on another)",
    ),
    "teacher_fingerprint": (
        "pseudo-label teachers' predictions",
        "the teachers were retrained; retrain this run or choose another --run",
    ),
    "distill_fingerprint": (
        "distillation teacher's models",
        "the teacher was retrained; retrain this run or choose another --run",
    ),
    "init_fingerprint": (
        "models it continued (--init-from)",
        "the run it continued was retrained; retrain this run or choose another --run",
    ),
}
SHARED = ("data_fingerprint", "folds_fingerprint", "test_fingerprint")  # what blends and teachers must share


def identity_diff(found: dict[str, Any] | None, expected: dict[str, Any]) -> str | None:
    """None when two identities are the same run's; else what differs, in words (a fold or
    seed folder checked against its run, an existing run against a new command)."""
    found = found or {}
    for key, (what, _) in FINGERPRINTS.items():
        if found.get(key) != expected.get(key):
            return f"{what}{' (--folds/--fold-seed/--subset)' if key == 'folds_fingerprint' else ''} differs"
    cfg_a, cfg_b = found.get("config") or {}, expected.get("config") or {}
    keys = sorted(k for k in set(cfg_a) | set(cfg_b) if cfg_a.get(k) != cfg_b.get(k))
    return f"config differs ({', '.join(keys)})" if keys else None


def require_same(named: list[tuple[str, dict[str, Any]]], keys: tuple[str, ...] = SHARED, role: str = "run") -> None:
    """Refuse, in one line naming the first difference and its fix, identities (name, identity)
    that differ in `keys` from the first one's. `role` says what the others are (run, teacher)."""
    (first, ref), *others = named
    for name, identity in others:
        for key in keys:
            if identity.get(key) != ref.get(key):
                what, fix = FINGERPRINTS[key]
                raise FkaggleError(f"{role} {name} has a different {what} than {first}; {fix}")


def require_test_file(name: str, identity: dict[str, Any], test_fingerprint: str | None, test_path: Any) -> None:
    """A run's test predictions belong to the test file a submission is made for."""
    recorded = identity.get("test_fingerprint")
    if recorded is None and test_fingerprint:  # trained without a test file: nothing to submit
        raise FkaggleError(
            f"run {name} was trained without a test file, so it has no test predictions: "
            f"`fkaggle predict {name} --test {test_path}` predicts this one"
        )
    if recorded and test_fingerprint and recorded != test_fingerprint:
        raise FkaggleError(
            f"run {name} predicted a different test file than {test_path}; pass --test "
            f"FILE with the file it predicted (`fkaggle predict {name} --test {test_path}` "
            "predicts this one)"
        )


def require_classes(name: str, label_values: list[int], expected: list[int]) -> None:
    if list(label_values) != list(expected):
        raise FkaggleError(
            f"run {name} was trained on other classes ({label_values}) than the competition's "
            f"({list(expected)}); pass the run's --competition or --train"
        )
