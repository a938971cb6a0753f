import pytest

from vgjax.data import format as fmt
from vgjax.data.dataset import load_split


def test_parse_zero_padded_and_empty_fields():
    name = "@0549678.37@4180874.60@10@S@37.77@-122.41@@@@@@@@@.jpg"
    assert fmt.parse_utm(name) == (549678.37, 4180874.60)
    fields = fmt.parse_fields(name)
    assert fields["utm_zone_number"] == "10" and fields["pano_id"] == "" and fields["note"] == ""


def test_parse_uses_file_name_not_folders():
    path = "/data/my@weird@folder/images/test/queries/@0000012.50@0000034.25@@@@@@@@@@@@@.png"
    assert fmt.parse_utm(path) == (12.5, 34.25)


def test_parse_short_name_only_east_north():
    assert fmt.parse_utm("@100.0@200.0@.jpg") == (100.0, 200.0)
    assert fmt.parse_fields("@100.0@200.0@.jpg")["note"] == ""


@pytest.mark.parametrize("bad", ["image.jpg", "@abc@200@.jpg", "@@200@.jpg", "@1@.jpg",
                                 "x@1@2@.jpg", "@nan@1@.jpg"])
def test_bad_names_raise_with_file_name(bad):
    with pytest.raises(fmt.DatasetFormatError, match="'" + bad.split("/")[-1].replace(".", r"\.")):
        fmt.parse_utm(bad)


def test_make_filename_roundtrip():
    name = fmt.make_filename(12.345, 6789.0, ".png", heading=90, note="night")
    assert name.startswith("@0000012.35@0006789.00@")
    assert fmt.parse_utm(name) == (12.35, 6789.0)
    assert fmt.parse_fields(name)["heading"] == "90"
    assert fmt.parse_fields(name)["note"] == "night"
    with pytest.raises(ValueError):
        fmt.make_filename(1, 2, note="a@b")


def test_utm_array_names_first_bad_files(tmp_path):
    paths = [f"/x/@{i}.0@1.0@.jpg" for i in range(3)] + [f"/x/bad{i}.jpg" for i in range(7)]
    with pytest.raises(fmt.DatasetFormatError) as e:
        fmt.utm_array(paths)
    msg = str(e.value)
    assert "7 file name(s)" in msg and "/x/bad0.jpg" in msg and "2 more" in msg


def test_list_images_extensions_and_listing_file(tmp_path):
    folder = tmp_path / "queries"
    (folder / "sub").mkdir(parents=True)
    for n in ["@1@2@.jpg", "@1@3@.JPEG", "sub/@1@4@.png", "notes.txt", "@1@5@.gif"]:
        (folder / n).write_bytes(b"")
    found = [p.split("queries/")[1] for p in fmt.list_images(folder)]
    assert found == sorted(["@1@2@.jpg", "@1@3@.JPEG", "sub/@1@4@.png"])
    (tmp_path / "queries_images_paths.txt").write_text("sub/@1@4@.png\n\n@1@2@.jpg\n")
    listed = fmt.list_images(folder)
    assert [p.split("queries/")[1] for p in listed] == ["@1@2@.jpg", "sub/@1@4@.png"]


def test_load_split_drops_train_queries_without_hard_positive(tmp_path, caplog):
    from conftest import write_dataset, write_image
    ds = write_dataset(tmp_path, splits=("train", "test"), n_db=6, n_q=2)
    far = fmt.make_filename(900000.0, 4100000.0, ".png")
    for split in ("train", "test"):
        write_image(str(ds / "images" / split / "queries" / far), (24, 32))
    with caplog.at_level("INFO"):
        train = load_split(ds, "train")
    assert len(train.queries) == 2 and len(train.dropped_queries) == 1
    assert "dropped 1 of 3" in caplog.text
    test = load_split(ds, "test")
    assert len(test.queries) == 3 and test.hard_positives is None
    # db every 20 m, queries 3 m past db 0 and db 2: neighbours at 3, 17 (and 23) m
    assert [len(s) for s in test.soft_positives] == [2, 3, 0]


def test_load_split_errors_name_paths(tmp_path):
    from conftest import write_dataset
    with pytest.raises(fmt.DatasetFormatError, match="does not exist"):
        load_split(tmp_path / "nope", "test")
    ds = write_dataset(tmp_path, splits=("test",), n_db=2, n_q=1)
    with pytest.raises(fmt.DatasetFormatError, match=r"splits present: \['test'\]"):
        load_split(ds, "train")
