"""Splits that cannot be evaluated or trained on are reported, naming the folder and radius."""
import logging

import pytest
from conftest import write_dataset

from vgjax.data.dataset import check_evaluable, load_split
from vgjax.data.format import DatasetFormatError


def test_val_without_any_positive_warns_and_check_refuses(tmp_path, caplog):
    # database every 20 m, queries 3 m beside: no database image within 2 m
    ds = write_dataset(tmp_path, splits=("val",), n_db=4, n_q=2, size=(8, 8))
    with caplog.at_level(logging.INFO, logger="vgjax.data.dataset"):
        val = load_split(ds, "val", soft_dist=2.0, hard_dist=1.0)
    folder = str(ds / "images" / "val")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert folder in warnings[0].getMessage() and "within 2 m" in warnings[0].getMessage()
    with pytest.raises(DatasetFormatError) as e:
        check_evaluable(val, "early stopping on it")
    assert str(e.value) == (f"{folder}: no query has a database image within 2 m: "
                            f"early stopping on it would be meaningless")


def test_val_with_some_positives_logs_how_many(tmp_path, caplog):
    ds = write_dataset(tmp_path, splits=("test",), n_db=3, n_q=3, size=(8, 8))
    # database at east 0, 20, 40 m; queries at 3, 43, 83 m: the last is 43 m from any
    with caplog.at_level(logging.INFO, logger="vgjax.data.dataset"):
        test = load_split(ds, "test", soft_dist=25.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "1 of 3 queries have no database image within 25 m" in caplog.text
    assert str(ds / "images" / "test") in caplog.text
    check_evaluable(test, "early stopping on it")  # some positives: fine


def test_all_positives_nothing_logged(tmp_path, caplog):
    ds = write_dataset(tmp_path, splits=("val",), n_db=6, n_q=2, size=(8, 8))
    with caplog.at_level(logging.INFO, logger="vgjax.data.dataset"):
        check_evaluable(load_split(ds, "val"), "early stopping on it")
    assert "no database image" not in caplog.text


def test_train_without_hard_positives_one_line_error(tmp_path):
    ds = write_dataset(tmp_path, splits=("train",), n_db=4, n_q=2, size=(8, 8))
    with pytest.raises(DatasetFormatError) as e:
        load_split(ds, "train", soft_dist=2.5, hard_dist=2.5)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{ds / 'images' / 'train'}: no training query has a database "
                              f"image within 2.5 m")
