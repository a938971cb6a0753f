import json
import shutil

import pytest


from conftest import write_dataset, write_image
from vgjax.data.format import make_filename
from vgjax.data.inspect import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_summary(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("train", "test"), n_db=6, n_q=2)
    code, out, err = run(capsys, ds, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"train", "test"}
    assert report["test"]["database"] == 6 and report["test"]["queries"] == 2
    assert report["test"]["database_image_sizes"] == {"24x32": 6}
    assert report["test"]["queries_without_soft_positives"] == 0
    code, out, _ = run(capsys, ds, "--verify-images")
    assert code == 0 and "dataset toy" in out and "UTM east" in out


def test_missing_dataset_and_images_folder(tmp_path, capsys):
    for wrong, why in ((tmp_path / "nope", "no such folder"), (__file__, "not a folder")):
        with pytest.raises(SystemExit) as e:  # a usage error: what to inspect is not a folder
            run(capsys, wrong)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.strip().splitlines()[-1].endswith(f"{wrong}: {why}")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, tmp_path / "empty")
    assert code == 1 and "empty/images does not exist" in err
    (tmp_path / "empty" / "images").mkdir()
    code, _, err = run(capsys, tmp_path / "empty")
    assert code == 1 and "has no split folder" in err


def test_missing_role_folder(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=3, n_q=1)
    shutil.rmtree(ds / "images" / "test" / "queries")
    code, _, err = run(capsys, ds)
    assert code == 1 and "test/queries does not exist" in err


def test_empty_split(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=3, n_q=1)
    for f in (ds / "images" / "test" / "database").iterdir():
        f.unlink()
    code, _, err = run(capsys, ds)
    assert code == 1 and "test/database holds no images" in err


def test_bad_file_names_are_named(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=3, n_q=1)
    write_image(str(ds / "images" / "test" / "database" / "IMG_0001.png"))
    write_image(str(ds / "images" / "test" / "database" / "@east@north@.png"))
    code, _, err = run(capsys, ds)
    assert code == 1 and "2 file name(s)" in err
    assert "IMG_0001.png" in err and "@east@north@.png" in err


def test_verify_images_names_corrupt_and_truncated(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=3, n_q=1)
    db = ds / "images" / "test" / "database"
    corrupt = db / make_filename(1.0, 2.0, ".jpg")
    corrupt.write_bytes(b"not an image at all")
    truncated = db / make_filename(3.0, 4.0, ".jpg")
    write_image(str(truncated), (64, 64))
    truncated.write_bytes(truncated.read_bytes()[:300])
    code, _, err = run(capsys, ds, "--verify-images")
    assert code == 1 and "2 unreadable or truncated" in err
    assert corrupt.name in err and truncated.name in err
