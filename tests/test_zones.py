"""UTM zones in dataset file names: read, checked, compared across a split, reported."""
import json

import pytest

from conftest import write_dataset, write_image
from vgjax.data import format as fmt
from vgjax.data.dataset import load_index, load_split
from vgjax.data.inspect import main


def zoned_dataset(root, db_zones, q_zones, split="test", images=False, name="zoned"):
    """One split: database image i at east 500000 + 20 i with zone `db_zones[i]` (a
    (number, letter) pair), query j 3 m beside database image 2 j with zone `q_zones[j]`.
    The files are empty unless `images` (names are all that loading a split reads)."""
    folder = root / name / "images" / split
    for role, zones, offset in (("database", db_zones, 0.0), ("queries", q_zones, 3.0)):
        (folder / role).mkdir(parents=True)
        for i, (number, letter) in enumerate(zones):
            east = 500000.0 + (2 * i if role == "queries" else i) * 20.0 + offset
            path = folder / role / fmt.make_filename(
                east, 4100000.0, ".png", utm_zone_number=number, utm_zone_letter=letter,
                pano_id=f"{role[0]}{i}")
            if images:
                write_image(str(path), (8, 8), seed=i)
            else:
                path.write_bytes(b"")
    return root / name


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_one_zone_passes(tmp_path):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 6, [(17, "T")] * 3)
    split = load_split(ds, "test")
    assert len(split.database) == 6 and len(split.queries) == 3
    assert set(split.database.zones) == set(split.queries.zones) == {"17T"}
    assert [len(s) for s in split.soft_positives] == [2, 3, 3]


def test_zone_fields_parse():
    name = "@0584501.87@4477068.62@17@T@040.44203@-079.99590@@@@@@@@@.jpg"
    assert fmt.parse_zone(name) == "17T"
    assert fmt.parse_zone("@1@2@05@t@.jpg") == "5T"  # leading zero, lower-case band
    assert fmt.parse_zone("@1@2@17@@.jpg") == "17"  # a number without band is accepted
    assert fmt.parse_zone("@1@2@@@.jpg") == fmt.parse_zone("@1@2@.jpg") == ""
    assert (fmt.zone_number("17T"), fmt.zone_hemisphere("17T")) == (17, "N")
    assert (fmt.zone_number("23K"), fmt.zone_hemisphere("23K")) == (23, "S")
    assert (fmt.zone_number(""), fmt.zone_hemisphere("17")) == (None, None)


def test_database_and_queries_in_different_zones_refused_by_load_split(tmp_path):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 6, [(18, "T")] * 3)
    with pytest.raises(fmt.DatasetFormatError) as e:
        load_split(ds, "test")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{ds / 'images' / 'test'}: images in different UTM zones: ")
    db0 = fmt.make_filename(500000.0, 4100000.0, ".png", utm_zone_number=17,
                            utm_zone_letter="T", pano_id="d0")
    q0 = fmt.make_filename(500003.0, 4100000.0, ".png", utm_zone_number=18,
                           utm_zone_letter="T", pano_id="q0")
    assert f"17T (6 images, e.g. database/{db0})" in msg
    assert f"18T (3 images, e.g. queries/{q0})" in msg
    assert "meaningless" in msg and "re-project" in msg and "(e.g. 17T)" in msg
    from vgjax.data.tfds_builder import list_folder  # a TFDS copy is refused when built
    with pytest.raises(fmt.DatasetFormatError, match="images in different UTM zones"):
        list_folder(ds)


def test_a_folder_mixing_zones_is_refused_naming_it(tmp_path):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 4 + [(18, "T")] * 2, [(17, "T")] * 2)
    database = ds / "images" / "test" / "database"
    with pytest.raises(fmt.DatasetFormatError, match="17T .4 images.*18T .2 images") as e:
        load_index(database)
    assert str(e.value).startswith(f"{database}: ")
    with pytest.raises(fmt.DatasetFormatError, match="different UTM zones"):
        load_split(ds, "test")


def test_different_zones_refused_by_inspect_cli_in_one_line(tmp_path, capsys):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 6, [(18, "T")] * 3)
    code, out, err = run(capsys, ds, "--json")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {ds / 'images' / 'test'}: images in different UTM")
    assert "17T (6 images" in err and "18T (3 images" in err


def test_band_letters_of_one_hemisphere_are_one_zone_hemispheres_are_not(tmp_path):
    ds = zoned_dataset(tmp_path, [(17, "S")] * 3 + [(17, "T")] * 3, [(17, "T")] * 3)
    assert load_split(ds, "test").database.zones.tolist() == ["17S"] * 3 + ["17T"] * 3
    ds = zoned_dataset(tmp_path, [(17, "N")] * 6, [(17, "M")] * 3, name="equator")
    with pytest.raises(fmt.DatasetFormatError, match="17N .*17M .*south of the equator"):
        load_split(ds, "test")


@pytest.mark.parametrize("number, letter, reason", [
    (0, "T", "zone number '0' is not an integer from 1 to 60"),
    (61, "T", "zone number '61'"),
    ("17.5", "T", "zone number '17.5'"),
    ("x", "T", "zone number 'x'"),
    (-3, "T", "zone number '-3'"),
    (17, "I", "zone letter 'I' is not a latitude band"),
    (17, "O", "zone letter 'O'"),
    (17, "A", "zone letter 'A'"),
    (17, "Y", "zone letter 'Y'"),
    (17, "TT", "zone letter 'TT'"),
    ("", "T", "zone letter 'T' without a zone number"),
])
def test_bad_zone_number_or_letter_refused_naming_the_file(tmp_path, number, letter, reason):
    name = fmt.make_filename(500000.0, 4100000.0, ".png", utm_zone_number=number,
                             utm_zone_letter=letter)
    with pytest.raises(fmt.DatasetFormatError, match=reason) as e:
        fmt.parse_zone(name)
    assert str(e.value).startswith(repr(name))
    ds = zoned_dataset(tmp_path, [(17, "T")] * 3, [(17, "T")])
    (ds / "images" / "test" / "queries" / name).write_bytes(b"")
    with pytest.raises(fmt.DatasetFormatError) as e:
        load_split(ds, "test")
    assert "1 file name(s)" in str(e.value) and name in str(e.value)
    assert reason in str(e.value)


def test_empty_zones_accepted(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=4, n_q=2, size=(8, 8))
    split = load_split(ds, "test")
    assert set(split.database.zones) == set(split.queries.zones) == {""}
    code, out, err = run(capsys, ds)
    assert code == 0, err
    assert "zones: unknown" in out


def test_known_and_unknown_zones_together_accepted(tmp_path, caplog):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 4 + [("", "")] * 2, [("", "")] * 3)
    with caplog.at_level("INFO"):
        split = load_split(ds, "test")
    assert len(split.queries) == 3
    assert "5 of 9 images carry no UTM zone" in caplog.text and "zone 17T" in caplog.text


def test_inspect_reports_zones(tmp_path, capsys):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 4, [(17, "T")] * 2, split="test", images=True)
    zoned_dataset(tmp_path, [(17, "T")] * 3 + [("", "")], [(17, "S")], split="train",
                  images=True)
    code, out, err = run(capsys, ds)
    assert code == 0, err
    assert "zones: 17T (all)" in out
    assert "zones: 17T (3), 17S (1), unknown (1)" in out
    code, out, err = run(capsys, ds, "--json")
    report = json.loads(out)
    assert report["test"]["zones"] == {"17T": 6}
    assert report["train"]["zones"] == {"17T": 3, "17S": 1, "unknown": 1}


def test_inspect_checks_every_split_before_reading_images(tmp_path, capsys, monkeypatch):
    ds = zoned_dataset(tmp_path, [(17, "T")] * 3, [(17, "T")], split="test", images=True)
    zoned_dataset(tmp_path, [(17, "T")] * 3, [(18, "T")], split="val")
    import vgjax.data.inspect as inspect
    read = []
    monkeypatch.setattr(inspect, "_scan", lambda paths, *a: read.append(paths))
    code, _, err = run(capsys, ds)
    assert code == 1 and "val: images in different UTM zones" in err and read == []


def test_synthetic_city_names_carry_one_zone_per_dataset():
    from vgjax.synthetic.specs import DATASET_SPECS
    from vgjax.synthetic.views import _file_name
    for spec in DATASET_SPECS.values():
        name = _file_name(spec, 500000.0, 4100000.0, 0.0, 0.0, 2.0, "day", "p0", "0")
        number, letter = spec.zone
        assert fmt.parse_zone(name) == f"{number}{letter}"


def test_indexes_built_from_paths_alone_are_checked_from_their_names():
    """What a TFDS copy hands over: paths relative to the dataset folder, no stored zones."""
    import numpy as np
    from vgjax.data.dataset import Index, split_from_indexes

    def index(role, east, number):
        paths = np.array([f"images/test/{role}/" + fmt.make_filename(
            east, 4100000.0, utm_zone_number=number, utm_zone_letter="T")])
        return Index(paths=paths, utm=fmt.utm_array(paths))

    split = split_from_indexes("x", "test", index("database", 500000.0, 17),
                               index("queries", 500003.0, 17), 25.0, 10.0, where="copy (test)")
    assert split.queries.zone_labels.tolist() == ["17T"]
    with pytest.raises(fmt.DatasetFormatError, match=r"^copy \(test\): images in different"):
        split_from_indexes("x", "test", index("database", 500000.0, 17),
                           index("queries", 500003.0, 18), 25.0, 10.0, where="copy (test)")
