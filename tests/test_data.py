"""The data layer: every format loads to the same canonical images; bad input is refused."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import FMNIST_DIR, run_cli, save_pickled_dict, write_csv

from fmnist_kaggle.data.images import check_min_class_count, load_images
from fmnist_kaggle.errors import DataError


def test_official_idx_files_load_with_labels(fmnist):
    data = load_images(FMNIST_DIR / "train-images-idx3-ubyte.gz")  # labels file found beside it
    assert data.images.shape == (60000, 28, 28) and data.images.dtype == np.uint8
    assert data.label_values == tuple(range(10))
    assert np.bincount(data.labels).tolist() == [6000] * 10
    assert data.format == "idx"


def test_csv_npy_npz_and_idx_give_identical_canonical_data(tmp_path, small):
    x, y = small["x_train"], small["y_train"]
    csv = write_csv(tmp_path / "train.csv", x, y)
    csv_unit = write_csv(tmp_path / "train_unit.csv", x.astype(np.float64), y, scale=1 / 255)
    digits = write_csv(tmp_path / "digits.csv", x, y, first_pixel=0)
    npy = save_pickled_dict(tmp_path / "d.npy", {"features": x.astype(np.float32) / 255, "target": y})
    flat = save_pickled_dict(tmp_path / "flat.npy", {"features": x.reshape(len(x), 784).astype(np.int64), "target": y})
    chan = save_pickled_dict(
        tmp_path / "chan.npy", {"features": x[..., None].astype(np.float32) / 255, "target": np.eye(10)[y]}
    )
    npz = tmp_path / "d.npz"
    np.savez(npz, x=x, y=y)
    np.save(tmp_path / "X_train.npy", x)
    np.save(tmp_path / "y_train.npy", y)
    idx = tmp_path / "train-images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.array(x.shape, dtype=">u4").tobytes() + x.tobytes()))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, 1]) + np.array([len(y)], dtype=">u4").tobytes() + y.astype(np.uint8).tobytes())
    )
    gz = tmp_path / "train.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    ref = load_images(csv)
    assert ref.format == "csv" and ref.source_scale == "0..255"
    for path in (gz, csv_unit, digits, npy, flat, chan, npz, tmp_path / "X_train.npy", idx):
        other = load_images(path)
        assert np.array_equal(other.images, x), path.name
        assert np.array_equal(other.labels, y), path.name
        assert other.fingerprint() == ref.fingerprint(), path.name
    assert load_images(csv_unit).source_scale == "0..1"


def test_test_csv_ids_from_any_id_column_or_synthesized(tmp_path, small):
    x = small["x_test"][:20]
    with_ids = write_csv(tmp_path / "test_ids.csv", x, ids=np.arange(100, 120), id_col="ImageId")
    without = write_csv(tmp_path / "test.csv", x)
    a = load_images(with_ids)
    assert a.id_column == "ImageId" and not a.ids_synthesized and a.ids.tolist() == list(range(100, 120))
    b = load_images(without)
    assert b.ids_synthesized and b.ids.tolist() == list(range(1, 21)) and b.labels is None


def test_five_class_one_based_labels_keep_original_values(five_class_npy):
    data = load_images(five_class_npy["train"])
    assert data.label_values == (1, 2, 3, 4, 5)
    assert data.labels.min() == 0 and data.labels.max() == 4
    assert np.array_equal(data.original_labels, np.asarray(data.label_values)[data.labels])


def test_test_labels_outside_training_classes_are_refused(tmp_path, small):
    np.save(tmp_path / "bad_truth.npy", np.full(len(small["x_test"]), 7))
    test = write_csv(tmp_path / "test.csv", small["x_test"])
    with pytest.raises(DataError, match="not among the training classes"):
        load_images(test, labels_path=tmp_path / "bad_truth.npy", label_values=(1, 2, 3, 4, 5))


def test_csv_parse_is_cached_by_file_hash(tmp_path, small, monkeypatch):
    import fmnist_kaggle.data.formats.csv as data_mod

    csv = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    first = load_images(csv)
    monkeypatch.setattr(data_mod, "_read_csv", lambda path: (_ for _ in ()).throw(AssertionError("parsed again")))
    second = load_images(csv)  # served from the cache, no parse
    assert second.fingerprint() == first.fingerprint()
    csv.write_text(csv.read_text().replace("\n0,", "\n1,", 1))  # changed bytes: a new cache key
    with pytest.raises(AssertionError, match="parsed again"):
        load_images(csv)


def test_restricted_unpickler_refuses_code_and_never_runs_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.npy"
    payload = np.array({"features": np.zeros((2, 28, 28)), "target": Evil()}, dtype=object)
    np.save(path, payload, allow_pickle=True)
    with pytest.raises(DataError, match="pickle holds something other than numpy arrays"):
        load_images(path)
    assert not marker.exists()


def test_min_class_count_for_kfold(tmp_path, small):
    y = small["y_train"].copy()
    keep = np.concatenate([np.flatnonzero(y != 3), np.flatnonzero(y == 3)[:1]])
    data = load_images(write_csv(tmp_path / "t.csv", small["x_train"][keep], y[keep]))
    with pytest.raises(DataError, match="class 3 has only 1 sample; 5-fold"):
        check_min_class_count(data, 5)


# ----------------------------------------------------------------------------- bad input through the CLI


def _bad_files(tmp: Path, small: dict) -> dict[str, tuple[list[str], str]]:
    """name -> (fkaggle data check args, expected message fragment)."""
    x, y = small["x_train"][:50], small["y_train"][:50]
    good_test = write_csv(tmp / "good_test.csv", small["x_test"][:10])
    cases: dict[str, tuple[list[str], str]] = {}

    def csv_case(name: str, text: str, fragment: str) -> None:
        p = tmp / f"{name}.csv"
        p.write_text(text)
        cases[name] = (["--train", str(p)], fragment)

    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    row = lambda lab, vals: f"{lab}," + ",".join(vals)  # noqa: E731
    zeros = ["0"] * 784
    cases["missing"] = (["--train", str(tmp / "nope.csv")], "file not found")
    (tmp / "empty.csv").write_text("")
    cases["empty"] = (["--train", str(tmp / "empty.csv")], "empty file")
    p = write_csv(tmp / "short.csv", x, y)
    import pandas as pd

    df = pd.read_csv(p)
    df.drop(columns=["pixel784"]).to_csv(tmp / "783.csv", index=False)
    cases["783_columns"] = (["--train", str(tmp / "783.csv")], "expected 784 pixel columns, found 783")
    csv_case(
        "non_numeric",
        f"{header}\n{row(1, zeros)}\n{row(2, ['abc'] + zeros[1:])}\n",
        "non-numeric pixel value 'abc' in column pixel1",
    )
    csv_case("nan", f"{header}\n{row(1, zeros)}\n{row(2, [''] + zeros[1:])}\n", "NaN pixel value in column pixel1")
    csv_case("negative", f"{header}\n{row(1, zeros)}\n{row(2, ['-3'] + zeros[1:])}\n", "negative pixel value -3")
    csv_case("above_255", f"{header}\n{row(1, zeros)}\n{row(2, ['300'] + zeros[1:])}\n", "pixel value 300 above 255")
    csv_case(
        "mixed_scale",
        f"{header}\n{row(1, ['0.5'] + zeros[1:])}\n{row(2, ['200'] + zeros[1:])}\n",
        "fractional pixel value 0.5 among values above 1",
    )
    csv_case("label_float", f"{header}\n{row(1.5, zeros)}\n{row(2, zeros)}\n", "label 1.5 is not an integer")
    csv_case("label_text", f"{header}\n{row('shoe', zeros)}\n{row(2, zeros)}\n", "label 'shoe' is not an integer")
    single = np.concatenate([np.flatnonzero(y != 0), np.flatnonzero(y == 0)[:1]])
    write_csv(tmp / "single.csv", x[single], y[single])
    cases["single_sample_class"] = (["--train", str(tmp / "single.csv")], "class 0 has only 1 sample; 5-fold")
    write_csv(tmp / "layout_train.csv", x, y, first_pixel=1)
    write_csv(tmp / "layout_test.csv", small["x_test"][:10], first_pixel=0)
    cases["layout_differs"] = (
        ["--train", str(tmp / "layout_train.csv"), "--test", str(tmp / "layout_test.csv")],
        "pixel columns pixel0..pixel783 differ from the training file's pixel1..pixel784",
    )
    write_csv(tmp / "dup_test.csv", small["x_test"][:4], ids=np.array([1, 2, 2, 3]))
    cases["duplicate_ids"] = (
        ["--train", str(tmp / "layout_train.csv"), "--test", str(tmp / "dup_test.csv")],
        "duplicate id '2'",
    )
    gz = gzip.compress((tmp / "layout_train.csv").read_bytes())
    (tmp / "trunc.csv.gz").write_bytes(gz[: len(gz) // 2])
    cases["truncated_gz"] = (["--train", str(tmp / "trunc.csv.gz")], "truncated or corrupt gzip file")
    (tmp / "bad-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + np.array([5, 28, 28], dtype=">u4").tobytes() + bytes(100)
    )
    cases["idx_header"] = (
        ["--train", str(tmp / "bad-images-idx3-ubyte")],
        "IDX header says 5x28x28 (3920 bytes) but the file holds 100",
    )
    (tmp / "magic-images-idx3-ubyte").write_bytes(bytes([1, 2, 8, 3]) + bytes(100))
    cases["idx_magic"] = (["--train", str(tmp / "magic-images-idx3-ubyte")], "not an IDX file (bad magic number)")
    save_pickled_dict(tmp / "mismatch.npy", {"features": x.astype(np.float32) / 255, "target": y[:-3]})
    cases["length_mismatch"] = (["--train", str(tmp / "mismatch.npy")], "features have 50 rows but target has 47")

    with open(tmp / "evil_dict.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array({"features": x, "target": NotAnArray()}, dtype=object), fh, protocol=3)
    cases["pickle_not_arrays"] = (
        ["--train", str(tmp / "evil_dict.npy")],
        "pickle holds something other than numpy arrays",
    )
    cases["good_test_sanity"] = (
        ["--train", str(tmp / "layout_train.csv"), "--test", str(good_test), "--folds", "2"],
        "",
    )
    return cases


class NotAnArray:
    """Anything but an array: the restricted unpickler must refuse it."""


def test_every_bad_input_is_one_line_exit_2_no_traceback_nothing_written(tmp_path, small):
    cases = _bad_files(tmp_path, small)
    for name, (args, fragment) in cases.items():
        png = tmp_path / "out" / f"{name}.png"
        res = run_cli("data", "check", *args, "--png", str(png), cwd=tmp_path)
        if not fragment:  # the control case: a good pair passes
            assert res.returncode == 0, res.stderr
            assert png.exists()
            continue
        assert res.returncode == 2, (name, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, (name, res.stderr)
        assert "Traceback" not in res.stderr
        assert fragment in lines[0], (name, lines[0])
        file_arg = args[args.index("--test") + 1] if name in ("layout_differs", "duplicate_ids") else args[1]
        assert Path(file_arg).name in lines[0], (name, lines[0])  # the message names the file
        assert not png.exists(), name


def test_data_check_on_official_csv_pair_and_five_class_npy(fmnist, tmp_path, kaggle_csv_pair, five_class_npy):
    res = run_cli(
        "data", "check", "--json", "--png", str(tmp_path / "idx.png"), cwd=Path(__file__).resolve().parents[1]
    )
    info = json.loads(res.stdout)
    assert res.returncode == 0, res.stderr
    assert info["train"]["rows"] == 60000 and info["test"]["rows"] == 10000 and info["test"]["has_labels"]
    assert (tmp_path / "idx.png").stat().st_size > 10_000

    train, test = kaggle_csv_pair
    res = run_cli(
        "data",
        "check",
        "--train",
        str(train),
        "--test",
        str(test),
        "--json",
        "--png",
        str(tmp_path / "csv.png"),
        cwd=tmp_path,
    )
    info = json.loads(res.stdout)
    assert res.returncode == 0, res.stderr
    assert info["train"]["format"] == "csv" and info["train"]["classes"] == 10 and info["test"]["ids_synthesized"]

    f = five_class_npy
    res = run_cli(
        "data",
        "check",
        "--train",
        str(f["train"]),
        "--test",
        str(f["test"]),
        "--sample-submission",
        str(f["sample"]),
        "--json",
        "--png",
        str(tmp_path / "npy.png"),
        cwd=tmp_path,
    )
    info = json.loads(res.stdout)
    assert res.returncode == 0, res.stderr
    assert info["train"]["label_values"] == [1, 2, 3, 4, 5]
    assert info["train"]["stored_scale"] == "0..1"
    assert info["sample_submission"]["columns"] == ["Id", "Category"]


def test_init_writes_a_config_that_data_check_accepts(tmp_path, five_class_npy):
    f = five_class_npy
    cfg = tmp_path / "comp.toml"
    res = run_cli(
        "init",
        "--train",
        str(f["train"]),
        "--test",
        str(f["test"]),
        "--sample-submission",
        str(f["sample"]),
        "--slug",
        "my-comp",
        "--out",
        str(cfg),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    text = cfg.read_text()
    assert 'slug = "my-comp"' in text and 'label_column = "Category"' in text
    res = run_cli("data", "check", "--competition", str(cfg), "--json", "--png", str(tmp_path / "g.png"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["train"]["label_values"] == [1, 2, 3, 4, 5]
    # init refuses to write a config from files that fail the checks
    bad = tmp_path / "bad.csv"
    bad.write_text("label,pixel1\n1,0\n")
    res = run_cli("init", "--train", str(bad), "--out", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert res.returncode == 2 and not (tmp_path / "bad.toml").exists()


def test_csv_test_labels_are_joined_on_the_id_column_in_any_row_order(tmp_path, small):
    import pandas as pd

    x, y = small["x_test"], small["y_test"]
    ids = np.arange(1000, 1000 + len(y))
    test = write_csv(tmp_path / "test.csv", x, ids=ids, id_col="Id")
    order = np.random.default_rng(0).permutation(len(y))  # a Kaggle solution file: another row order, a Usage column
    solution = pd.DataFrame({"Id": ids[order], "label": y[order], "Usage": np.where(order % 2, "Public", "Private")})
    solution.to_csv(tmp_path / "solution.csv", index=False)
    s = load_images(test, labels_path=tmp_path / "solution.csv", label_values=tuple(range(10)))
    assert np.array_equal(s.labels, y) and np.array_equal(s.ids, ids)

    solution.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="1 test id\\(s\\) missing"):
        load_images(test, labels_path=tmp_path / "short.csv", label_values=tuple(range(10)))
    pd.concat([solution, solution.iloc[:1].assign(Id=5)]).to_csv(tmp_path / "extra.csv", index=False)
    with pytest.raises(DataError, match="1 id\\(s\\) not in the test file"):
        load_images(test, labels_path=tmp_path / "extra.csv", label_values=tuple(range(10)))
    # the one-column form stays positional
    pd.DataFrame({"label": y}).to_csv(tmp_path / "plain.csv", index=False)
    assert np.array_equal(
        load_images(test, labels_path=tmp_path / "plain.csv", label_values=tuple(range(10))).labels, y
    )
