"""Training sets read as places: GSV-Cities folders, UTM grid cells of standard folders,
`data.format`, and the synthetic city's `--format gsv_cities` output."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging

import numpy as np
import pytest

from conftest import write_dataset, write_image
from vgjax.config import ConfigError
from vgjax.data.format import DatasetFormatError
from vgjax.data.places import (
    GSV_COLUMNS,
    PLACE_FORMATS,
    gsv_image_name,
    load_gsv_cities,
    open_places,
    places_from_folder,
)


def write_gsv(root, places, city="Town", header=GSV_COLUMNS, ext=".jpg"):
    """A GSV-Cities folder with `places[place_id]` images of each place (8 x 8 pixels)."""
    rows = []
    for place, count in places.items():
        for k in range(count):
            row = {"place_id": place, "year": 2010 + k, "month": 1 + k, "northdeg": 7 * k,
                   "city_id": city, "lat": 51.5 + place / 1000, "lon": -0.125 - k / 10000,
                   "panoid": f"pano-{place}_{k}"}
            rows.append(row)
            write_image(str(root / "Images" / city / gsv_image_name(**row, ext=ext)), (8, 8),
                        seed=place * 10 + k)
    (root / "Dataframes").mkdir(parents=True, exist_ok=True)
    with open(root / "Dataframes" / f"{city}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header])
    return rows


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def synthetic_gsv(tmp_path_factory):
    """The tiny city's training district in the GSV-Cities format, written by the CLI."""
    from vgjax.synthetic import main
    root = tmp_path_factory.mktemp("gsv-city")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--out", str(root), "--format", "gsv_cities", "--workers", "1"]) == 0
    return root, json.loads(out.getvalue())


def test_cli_gsv_cities_writes_places_of_several_views(synthetic_gsv):
    root, summary = synthetic_gsv
    top = root / "gsv-cities"
    assert summary["format"] == "gsv_cities"
    city = summary["gsv_cities"]["cities"]["SynthCity"]
    assert city["places"] >= 8 and city["views_per_place"][0] >= 4
    with open(top / "Dataframes" / "SynthCity.csv", newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == GSV_COLUMNS
        rows = list(reader)
    assert len(rows) == city["images"] == len(list((top / "Images" / "SynthCity").iterdir()))
    assert not (root / "pitts30k").exists()  # instead of the standard folders


def test_cli_gsv_cities_refuses_datasets_and_existing_output(synthetic_gsv, capsys):
    from vgjax.synthetic import main
    root, summary = synthetic_gsv
    with pytest.raises(SystemExit) as e:
        main(["--out", str(root), "--format", "gsv_cities", "--datasets", "sf-xs"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["--out", str(root), "--format", "gsv_cities", "--workers", "1"])
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--format", "gsv_cities", "--stats-only"]) == 0  # renders nothing
    planned = json.loads(capsys.readouterr().out)
    assert planned["places"] == summary["gsv_cities"]["cities"]["SynthCity"]["places"]


def test_round_trip_synthetic_gsv_cities(synthetic_gsv):
    root, summary = synthetic_gsv
    city = summary["gsv_cities"]["cities"]["SynthCity"]
    places = load_gsv_cities(root / "gsv-cities")
    assert len(places) == city["images"] and places.num_places == city["places"]
    assert places.labels.dtype == np.int32
    assert set(places.labels.tolist()) == set(range(places.num_places))
    assert np.all(np.diff(places.labels) >= 0)  # sorted by place
    counts = places.counts()
    assert counts.min() == city["views_per_place"][0] and counts.max() <= 6
    assert places.place_ids[0] == "SynthCity/0000000"
    for label, members in enumerate(places.members()):
        names = [p.rsplit("/", 1)[1] for p in places.paths[members]]
        assert all(n.startswith(f"SynthCity_{label:07d}_") for n in names)
        assert len(set(places.years[members].tolist())) == len(members)  # other years
    assert np.all(np.isfinite(places.latlon)) and set(places.cities.tolist()) == {"SynthCity"}


def test_min_images_refuses_in_one_line_or_drops(synthetic_gsv, caplog):
    root, _ = synthetic_gsv
    everything = load_gsv_cities(root / "gsv-cities")
    with pytest.raises(DatasetFormatError) as e:
        load_gsv_cities(root / "gsv-cities", min_images=5)
    text = one_line(e)
    assert "city SynthCity place" in text and "fewer than min_images=5" in text
    with caplog.at_level(logging.INFO, logger="vgjax.data.places"):
        kept = load_gsv_cities(root / "gsv-cities", min_images=5, drop_small=True)
    assert kept.counts().min() >= 5
    dropped = int((everything.counts() < 5).sum())
    assert kept.num_places == everything.num_places - dropped > 0
    assert set(kept.labels.tolist()) == set(range(kept.num_places))
    assert f"dropped {dropped} of {everything.num_places} places" in caplog.text


def test_small_place_refused_naming_city_place_and_count(tmp_path):
    write_gsv(tmp_path, {3: 4, 8: 2, 9: 1})
    with pytest.raises(DatasetFormatError) as e:
        load_gsv_cities(tmp_path)
    assert "city Town place 8 has 2 image(s)" in one_line(e)
    places = load_gsv_cities(tmp_path, drop_small=True)
    assert places.place_ids.tolist() == ["Town/0000003"] and len(places) == 4


def test_missing_images_named_with_their_count(tmp_path):
    rows = write_gsv(tmp_path, {1: 4, 2: 5})
    for r in rows[:2]:
        (tmp_path / "Images" / "Town" / gsv_image_name(**r)).unlink()
    with pytest.raises(DatasetFormatError) as e:
        load_gsv_cities(tmp_path)
    text = one_line(e)
    assert "2 image(s) listed in Dataframes/ are missing" in text
    assert gsv_image_name(**rows[0]) in text


def test_bad_header_refused_and_extra_columns_ignored(tmp_path):
    write_gsv(tmp_path / "a", {1: 4}, header=("place_id", "year", "month", "city_id", "lat",
                                                "lon", "panoid"))
    with pytest.raises(DatasetFormatError) as e:
        load_gsv_cities(tmp_path / "a")
    assert "lacks the column(s) northdeg" in one_line(e)
    # an index column first (as pandas writes it), the columns in another order, .JPG files
    write_gsv(tmp_path / "b", {1: 4, 2: 4}, header=("", *reversed(GSV_COLUMNS)), ext=".JPG")
    assert load_gsv_cities(tmp_path / "b").num_places == 2


def test_cities_are_separate_places_in_the_given_order(tmp_path):
    write_gsv(tmp_path, {1: 4, 2: 4}, city="Boston")
    write_gsv(tmp_path, {1: 5}, city="London")
    both = load_gsv_cities(tmp_path, cities=["London", "Boston"])
    assert both.place_ids.tolist() == ["London/0000001", "Boston/0000001", "Boston/0000002"]
    assert both.counts().tolist() == [5, 4, 4]
    assert load_gsv_cities(tmp_path).place_ids[0] == "Boston/0000001"  # sorted by default
    with pytest.raises(DatasetFormatError) as e:
        load_gsv_cities(tmp_path, cities=["Paris"])
    assert "no Paris.csv (cities present: Boston, London)" in one_line(e)
    with pytest.raises(DatasetFormatError, match="Dataframes does not exist"):
        load_gsv_cities(tmp_path / "Images")


def test_places_from_folder_groups_utm_cells(tmp_path):
    # database every 20 m from east 500000, queries 3 m east of database images 0, 2, 4, 6, 8:
    # 50 m cells hold 5, 3, 4, 3 and 2 images
    dataset = write_dataset(tmp_path, splits=("train",), size=(8, 8))
    with pytest.raises(DatasetFormatError) as e:
        places_from_folder(dataset, cell_m=50.0)
    assert "place 50m:10001:82000 has 3 image(s), fewer than min_images=4" in one_line(e)
    places = places_from_folder(dataset, cell_m=50.0, drop_small=True)
    assert places.place_ids.tolist() == ["50m:10000:82000", "50m:10002:82000"]
    assert places.counts().tolist() == [5, 4]
    assert places.labels.dtype == np.int32
    for label, members in enumerate(places.members()):
        cells = np.floor(places.utm[members] / 50.0)
        assert (cells == cells[0]).all()
    roles = {p.split("/")[-2] for p in places.paths}
    assert roles == {"database", "queries"}
    assert places_from_folder(dataset, cell_m=50.0, min_images=2).counts().tolist() == \
        [5, 3, 4, 3, 2]
    again = places_from_folder(dataset, cell_m=50.0, drop_small=True)
    assert (again.paths == places.paths).all() and (again.labels == places.labels).all()
    with pytest.raises(DatasetFormatError) as e:
        places_from_folder(dataset, heading_bins=4, min_images=1)
    assert "needs the heading field" in one_line(e)


def _data_cfg(root, **changes):
    from vgjax.cli.config import schema
    config = schema()
    config.data.root = str(root)
    for k, v in changes.items():
        config.data[k] = v
    return config


def test_registry_and_data_format_option(tmp_path, synthetic_gsv):
    from vgjax.data.settings import DataSettings, check_data
    assert PLACE_FORMATS.names() == ["gsv_cities", "folder"]
    assert PLACE_FORMATS.option == "data.format"
    config = _data_cfg(tmp_path)
    assert config.data.format == "folder" and DataSettings().format == "folder"
    check_data(config)
    for bad, words in (("nope", "unknown value 'nope' (accepted: gsv_cities, folder)"),
                       ("folder(radius=3)", "folder has no argument 'radius'")):
        with pytest.raises(ConfigError) as e:
            check_data(_data_cfg(tmp_path, format=bad))
        assert words in one_line(e)

    write_dataset(tmp_path, splits=("train",), size=(8, 8))
    config = _data_cfg(tmp_path, train_dataset="toy",
                       format="folder(cell_m=50.0, drop_small=True)")
    check_data(config)
    assert open_places(config.data).counts().tolist() == [5, 4]
    gsv_root, _ = synthetic_gsv
    config = _data_cfg(tmp_path, train_dataset=str(gsv_root / "gsv-cities"),
                       format="gsv_cities(cities='SynthCity')")
    check_data(config)
    places = open_places(config.data)
    assert places.place_ids[0] == "SynthCity/0000000"
    with pytest.raises(DatasetFormatError):  # reaches the caller as it is
        open_places(_data_cfg(tmp_path, train_dataset="toy", format="folder").data)
