"""`python -m vgjax.localize`: coordinates from a CSV, @UTM names and EXIF GPS, predictions,
pictures and the map, a saved index reused, and errors raised before anything is described."""
from __future__ import annotations

import csv
import json
import re
import shutil

import jax
import numpy as np
import pytest
from conftest import write_image
from PIL import Image

from configs.default import get_config
from vgjax.data.format import make_filename
from vgjax.localize import cli
from vgjax.eval.search import exact_search
from vgjax.eval.store import DescriptorStore
from vgjax.localize.coordinates import (CoordinatesError, Places, database_places,
                                        read_coords_csv)
from vgjax.localize.index import INFO_FILE, build_index
from vgjax.localize.predictions import Predictions, confidence, write_predictions_csv
from vgjax.models.io import save_model
from vgjax.models.network import init_variables

N_DB = 6
SIZE = (32, 40)
COPIES = {"copy_of_1": 1, "copy_of_4": 4}  # query stem -> the database image it copies
RUN = ["--batch-size", "4", "--num-workers", "2", "--top-k", "3"]


def latlon(i):
    return 40.4406 + 0.0013 * i, -79.9959 - 0.0021 * i


def dms(x):
    x = abs(x)
    d = int(x)
    m = int((x - d) * 60)
    return float(d), float(m), round((x - d - m / 60) * 3600, 4)


def write_gps_jpeg(path, lat, lon, seed):
    write_image(str(path), SIZE, seed=seed)
    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat),
                    3: "E" if lon >= 0 else "W", 4: dms(lon)}
    with Image.open(path) as img:
        img.load()
        img.save(path, exif=exif, quality=95)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model dir and three database folders of the same six images: EXIF GPS,
    plain names with a CSV, @UTM names; queries copy database images 1 and 4."""
    root = tmp_path_factory.mktemp("localize")
    cfg = get_config().model
    cfg.resnet_width = 4
    cfg.netvlad_clusters = 4
    variables = init_variables(cfg, jax.random.key(0), image_size=(32, 32))
    model = save_model(root / "model", cfg, variables, (32, 32))
    exif, plain, names = root / "exif", root / "plain", root / "names"
    rows = ["path,lat,lon"]
    for i in range(N_DB):
        write_gps_jpeg(exif / f"img{i}.jpg", *latlon(i), seed=i)
        rel = f"sub/img{i}.jpg"
        (plain / "sub").mkdir(parents=True, exist_ok=True)
        write_image(str(plain / rel), SIZE, seed=i)
        rows.append(f"{rel},{latlon(i)[0]},{latlon(i)[1]}")
        write_image(str(names / make_filename(500000.0 + 30 * i, 4100000.0 + 7 * i, ".jpg",
                                              utm_zone_number=17, utm_zone_letter="T")),
                    SIZE, seed=i)
    (root / "coords.csv").write_text("\n".join(rows) + "\n")
    queries = {}
    for folder in (exif, plain, names):
        q = root / f"queries_{folder.name}"
        q.mkdir()
        db = sorted(p for p in folder.rglob("*.jpg"))
        for stem, i in COPIES.items():
            shutil.copy(db[i], q / f"{stem}.jpg")
        write_image(str(q / "unrelated.jpg"), SIZE, seed=99)
        queries[folder.name] = q
    return {"root": root, "model": model, "cfg": cfg, "variables": variables, "exif": exif,
            "plain": plain, "names": names, "csv": root / "coords.csv", "queries": queries}


def read_rows(out):
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_ok(capsys, *args):
    assert cli.main([str(a) for a in args] + RUN) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def check_outputs(out, database_folder, columns):
    """Rows, top-1 of the copies, confidences, pictures and map."""
    rows = read_rows(out)
    assert list(rows[0]) == ["query", "rank", "match", f"match_{columns[0]}",
                             f"match_{columns[1]}", "descriptor_distance", "confidence",
                             f"query_{columns[0]}", f"query_{columns[1]}", "metres"]
    assert len(rows) == 3 * 3
    db = sorted(str(p) for p in database_folder.rglob("*.jpg"))
    by_query: dict = {}
    for r in rows:
        by_query.setdefault(r["query"], []).append(r)
    assert len(by_query) == 3
    for query, ranked in by_query.items():
        assert [int(r["rank"]) for r in ranked] == [1, 2, 3]
        d = [float(r["descriptor_distance"]) for r in ranked]
        assert d == sorted(d)
        assert sum(float(r["confidence"]) for r in ranked) == pytest.approx(1, abs=1e-5)
        stem = query.rsplit("/", 1)[-1][:-4]
        if stem in COPIES:
            assert ranked[0]["match"] == db[COPIES[stem]]
            assert d[0] < 1e-4 < d[1]
            assert float(ranked[0]["confidence"]) > 0.99
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    assert pictures == ["copy_of_1.jpg", "copy_of_4.jpg", "unrelated.jpg"]
    with Image.open(out / "pictures" / "copy_of_1.jpg") as img:
        assert img.format == "JPEG" and img.width > 3 * img.height
    with Image.open(out / "map.png") as img:
        pixels = np.asarray(img.convert("RGB"))
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 20  # the predicted places' stars
    return by_query


def test_exif_folder_then_saved_index(world, tmp_path, capsys, monkeypatch):
    out, index = tmp_path / "out", tmp_path / "index"
    summary = run_ok(capsys, "--checkpoint", world["model"], "--database", world["exif"],
                     "--queries", world["queries"]["exif"], "--out", out,
                     "--save-index", index)
    assert summary["system"] == "latlon" and summary["database"] == N_DB
    by_query = check_outputs(out, world["exif"], ("lat", "lon"))
    for query, ranked in by_query.items():
        stem = query.rsplit("/", 1)[-1][:-4]
        if stem in COPIES:  # the copy keeps its EXIF: the query's own place is known
            lat, lon = latlon(COPIES[stem])
            assert float(ranked[0]["match_lat"]) == pytest.approx(lat, abs=1e-6)
            assert float(ranked[0]["match_lon"]) == pytest.approx(lon, abs=1e-6)
            assert float(ranked[0]["query_lat"]) == pytest.approx(lat, abs=1e-6)
            assert float(ranked[0]["metres"]) == pytest.approx(0, abs=0.5)
            assert float(ranked[1]["metres"]) > 100
        else:
            assert ranked[0]["query_lat"] == "" and ranked[0]["metres"] == ""
    assert sorted(p.name for p in index.iterdir()) == ["database.npz", "index.faiss",
                                                       INFO_FILE]

    described = []
    real = cli.extract_descriptors

    def counting(paths, *a, **k):
        described.extend(paths)
        return real(paths, *a, **k)
    monkeypatch.setattr(cli, "extract_descriptors", counting)
    again = tmp_path / "again"
    run_ok(capsys, "--checkpoint", world["model"], "--index", index,
           "--queries", world["queries"]["exif"], "--out", again)
    assert sorted(described) == sorted(str(p) for p in world["queries"]["exif"].iterdir())
    first, second = read_rows(out), read_rows(again)
    assert [(r["query"], r["match"], r["match_lat"]) for r in first] == \
        [(r["query"], r["match"], r["match_lat"]) for r in second]
    np.testing.assert_allclose([float(r["descriptor_distance"]) for r in first],
                               [float(r["descriptor_distance"]) for r in second], atol=1e-6)


@pytest.mark.parametrize("source", ["csv", "names"])
def test_csv_and_utm_names(world, tmp_path, capsys, source):
    folder = world["plain"] if source == "csv" else world["names"]
    extra = ["--database-coords", world["csv"]] if source == "csv" else []
    out = tmp_path / "out"
    summary = run_ok(capsys, "--checkpoint", world["model"], "--database", folder, *extra,
                     "--queries", *sorted(world["queries"][folder.name].iterdir()),
                     "--out", out)
    columns = ("lat", "lon") if source == "csv" else ("utm_east", "utm_north")
    assert summary["system"] == ("latlon" if source == "csv" else "utm")
    by_query = check_outputs(out, folder, columns)
    top1 = by_query[str(world["queries"][folder.name] / "copy_of_4.jpg")][0]
    if source == "csv":
        assert float(top1["match_lat"]) == pytest.approx(latlon(4)[0], abs=1e-7)
    else:
        assert (float(top1["match_utm_east"]), float(top1["match_utm_north"])) == \
            (500120.0, 4100028.0)


def test_coordinate_sources(tmp_path):
    folder = tmp_path / "db"
    named = folder / make_filename(500010.0, 4100000.0, ".jpg")
    write_gps_jpeg(named, 10.0, 20.0, seed=0)  # a @UTM name and EXIF: the name wins
    other = folder / make_filename(500020.0, 4100000.0, ".jpg")
    write_image(str(other), SIZE, seed=1)
    paths = [str(named), str(other)]
    (tmp_path / "c.csv").write_text(f" Path , UTM_East,utm_north\n{named.name},1,2\n")
    places = database_places(paths, folder, tmp_path / "c.csv")
    assert places.system == "utm" and places.sources == ("csv", "name")
    np.testing.assert_array_equal(places.values, [[1, 2], [500020, 4100000]])
    assert database_places(paths, folder).sources == ("name", "name")

    gps = folder / "south_west.jpg"
    write_gps_jpeg(gps, -33.8568, -151.2153, seed=2)
    places = database_places([str(gps)], folder)
    assert places.system == "latlon" and places.sources == ("exif",)
    np.testing.assert_allclose(places.values, [[-33.8568, -151.2153]], atol=1e-6)
    with pytest.raises(CoordinatesError, match="mix lat/lon .*south_west.jpg"):
        database_places([str(gps), str(other)], folder)

    bare = folder / "bare.jpg"
    write_image(str(bare), SIZE, seed=3)
    with pytest.raises(CoordinatesError, match=f"{bare}: no coordinates"):
        database_places([str(gps), str(bare)], folder)
    kept = database_places([str(gps), str(bare)], folder, allow_missing=True)
    assert kept.sources == ("exif", "") and np.isnan(kept.values[1]).all()

    bad = tmp_path / "bad.csv"
    for text, message in [("path,x,y\na.jpg,1,2\n", "no accepted columns.*lat,lon; latitude"),
                          ("path,lat,lon,east,north\n", "several coordinate column pairs"),
                          ("path,lat,lon\nbare.jpg,north,2\n", "line 2: lat, lon 'north'"),
                          ("path,lat,lon\nbare.jpg,91,2\n", "line 2: latitude 91.0"),
                          ("path,lat,lon\nbare.jpg,1,2\nbare.jpg,1,2\n", "listed twice")]:
        bad.write_text(text)
        with pytest.raises(CoordinatesError, match=message):
            read_coords_csv(bad, folder)
    bad.write_text("latitude,path,longitude\n1,nowhere.jpg,2\n")
    with pytest.raises(CoordinatesError, match="1 row.* name no image.*'nowhere.jpg'"):
        database_places([str(bare)], folder, bad)


def test_confidence():
    c = confidence(np.array([[0.0, 0.5, 1.0], [0.2, 0.2, 0.2], [0.1, 0.2, 0.4]]))
    np.testing.assert_allclose(c.sum(1), 1)
    assert c[0, 0] > 1 - 1e-9
    np.testing.assert_allclose(c[1], 1 / 3)
    np.testing.assert_allclose(c[2], [4 / 7, 2 / 7, 1 / 7])


def test_errors_before_describing(world, tmp_path, capsys, monkeypatch):
    out, index = tmp_path / "out", tmp_path / "index"
    # an index to refuse later: saved by this model at 32x32
    run_ok(capsys, "--checkpoint", world["model"], "--database", world["names"],
           "--queries", world["queries"]["names"] / "unrelated.jpg", "--out", out,
           "--save-index", index)

    def never(*a, **k):
        raise AssertionError("described something before the inputs were checked")
    monkeypatch.setattr(cli, "extract_descriptors", never)
    other = save_model(tmp_path / "other", world["cfg"], world["variables"], (40, 40))
    bare = tmp_path / "bare"
    write_image(str(bare / "a.jpg"), SIZE, seed=0)
    cut = tmp_path / "cut"
    shutil.copytree(world["names"], cut)
    victim = sorted(cut.iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:-40])
    odd = tmp_path / "odd_index"
    shutil.copytree(index, odd)
    info = json.loads((odd / INFO_FILE).read_text())
    info["model"]["descriptor_dim"] = 7
    (odd / INFO_FILE).write_text(json.dumps(info))
    q = world["queries"]["names"]
    base = ["--queries", q, "--out", out]
    cases = [
        (["--checkpoint", tmp_path / "nowhere", "--database", world["names"]],
         "--checkpoint .*nowhere: no such file"),
        (["--checkpoint", world["model"], "--database", bare], f"{bare / 'a.jpg'}: no coord"),
        (["--checkpoint", world["model"], "--database", world["plain"], "--database-coords",
          tmp_path / "none.csv"], "--database-coords .*none.csv: no such file"),
        (["--checkpoint", world["model"], "--database", world["names"], "--resize", "8", "8"],
         "--resize: a 8x8 image is too small"),
        (["--checkpoint", world["model"], "--database", cut], f"{victim}: truncated"),
        (["--checkpoint", world["model"], "--database", world["names"], "--queries",
          tmp_path / "nope.jpg"], "--queries .*nope.jpg: no such file"),
        (["--checkpoint", world["model"], "--index", index, "--database", world["names"]],
         "--database cannot be given with it"),
        (["--checkpoint", world["model"], "--index", tmp_path / "bare"],
         f"--index {bare}: no {INFO_FILE}"),
        (["--checkpoint", other, "--index", index], "described at 32x32, this run .* 40x40"),
        (["--checkpoint", other, "--index", index, "--resize", "32", "32"],
         "made by another model"),
        (["--checkpoint", world["model"], "--index", odd], "made with 7-d descriptors"),
        (["--checkpoint", world["model"], "--database", world["names"], "--top-k", "0"],
         "--top-k must be >= 1"),
    ]
    for args, message in cases:
        assert cli.main([str(a) for a in base + args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        assert re.search(message, err[0]), (message, err[0])


def test_index_search_is_evaluations_search(tmp_path):
    """Blocks added to a faiss IndexFlatL2 rank as evaluation's exact search does."""
    rng = np.random.default_rng(0)
    database = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(7, 8)).astype(np.float32)
    store = DescriptorStore(database.shape, np.float32)
    store.write(0, database)
    places = Places("utm", np.full((50, 2), np.nan), ("",) * 50)
    index = build_index(store, [f"{i}.jpg" for i in range(50)], places, {},
                        chunk_bytes=8 * 4 * 16)  # four blocks
    d, i = index.search(queries, 5)
    ed, ei = exact_search(store, queries, 5, backend="faiss-cpu")
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_allclose(d, ed, rtol=1e-5)
    assert index.search(queries, 99)[1].shape == (7, 50)


def test_csv_cells_of_unknown_places(tmp_path):
    """A database photo kept by --allow-missing-coords and a query without a known place
    give empty cells, not NaN."""
    database = Places("latlon", np.array([[40.0, -80.0], [np.nan, np.nan]]), ("exif", ""))
    queries = Places("latlon", np.array([[40.0, -80.001], [np.nan, np.nan]]), ("exif", ""))
    preds = Predictions.from_search(["q0.jpg", "q1.jpg"], [[0.5, 1.0], [0.2, 0.3]],
                                    [[1, 0], [0, 1]], queries)
    write_predictions_csv(tmp_path / "p.csv", preds, ["a.jpg", "b.jpg"], database)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["match"] for r in rows] == ["b.jpg", "a.jpg", "a.jpg", "b.jpg"]
    assert rows[0]["match_lat"] == "" and rows[0]["metres"] == ""
    assert rows[1]["match_lat"] == "40.0000000"
    assert float(rows[1]["metres"]) == pytest.approx(85.2, abs=0.2)  # 0.001 deg of longitude
    assert rows[2]["query_lat"] == "" and rows[2]["metres"] == ""
