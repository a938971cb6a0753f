"""The synthetic city: determinism, folder format, and that nearby views really look alike."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from vgjax import synthetic
from vgjax.data import dataset as ds
from vgjax.data import format as fmt


def _digests(root, name):
    """{path under <name>/images: sha256} (the images; city.json says how they were built)."""
    out = {}
    base = root / name / "images"
    for dirpath, _, files in os.walk(base):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, base)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = synthetic.generate(root, "tiny", seed=0, workers=2)
    return root, summary


def test_summary_counts(tiny):
    _root, summary = tiny
    counts = synthetic.PRESETS["tiny"].counts
    for name, splits in counts.items():
        for split, (n_db, n_q) in splits.items():
            got = summary["datasets"][name][split]
            assert (got["database"], got["queries"]) == (n_db, n_q), (name, split)
    assert (
        summary["datasets"]["tokyo-night"]["test"]["queries"] == counts["tokyo-xs"]["test"][1] // 3
    )
    assert summary["rendered"] > 0 and summary["images_per_s"] > 0


def test_folder_format(tiny):
    root, _ = tiny
    expected = {
        "pitts30k": ["train", "val", "test"],
        "sf-xs": ["test"],
        "tokyo-xs": ["test"],
        "tokyo-night": ["test"],
    }
    for name, splits in expected.items():
        assert ds.available_splits(root / name) == splits
        for split in splits:
            for role in fmt.ROLES:
                paths = fmt.list_images(root / name / "images" / split / role)
                assert paths, (name, split, role)
                fmt.utm_array(paths)  # every name parses
                names = [os.path.basename(p) for p in paths]
                assert len(set(names)) == len(names)
                notes = {fmt.parse_fields(p)["note"] for p in paths}
                if role == "database":
                    assert notes == {"day"}
    with Image.open(fmt.list_images(root / "pitts30k" / "images" / "train" / "queries")[0]) as im:
        assert im.size == (80, 60) and im.mode == "RGB"


def test_plausible_utm(tiny):
    root, _ = tiny
    utm = fmt.utm_array(fmt.list_images(root / "pitts30k" / "images" / "test" / "database"))
    assert np.all(np.abs(utm[:, 0] - 585000) < 3000) and np.all(np.abs(utm[:, 1] - 4477000) < 3000)
    fields = fmt.parse_fields(
        fmt.list_images(root / "pitts30k" / "images" / "test" / "database")[0]
    )
    assert (fields["utm_zone_number"], fields["utm_zone_letter"]) == ("17", "T")
    assert abs(float(fields["lat"]) - 40.44) < 0.1 and abs(float(fields["lon"]) + 80.0) < 0.1


def test_query_times(tiny):
    root, _ = tiny
    tokyo = ds.load_split(root / "tokyo-xs", "test").queries.notes
    values, counts = np.unique(tokyo, return_counts=True)
    assert list(values) == ["day", "night", "sunset"] and len(set(counts)) == 1
    night = ds.load_split(root / "tokyo-night", "test")
    assert set(night.queries.notes) == {"night"}
    tokyo_db = [
        os.path.basename(p) for p in ds.load_split(root / "tokyo-xs", "test").database.paths
    ]
    assert [os.path.basename(p) for p in night.database.paths] == tokyo_db
    for split in ("train", "val", "test"):
        assert set(ds.load_split(root / "pitts30k", split).queries.notes) == {"day"}


def test_positives(tiny):
    root, _ = tiny
    train = ds.load_split(root / "pitts30k", "train")
    assert len(train.dropped_queries) == 0
    assert all(len(h) > 0 for h in train.hard_positives)
    for name, split in (
        ("pitts30k", "val"),
        ("pitts30k", "test"),
        ("sf-xs", "test"),
        ("tokyo-xs", "test"),
    ):
        s = ds.load_split(root / name, split)
        assert np.mean([len(p) > 0 for p in s.soft_positives]) > 0.9, (name, split)


def test_splits_are_disjoint(tiny):
    root, _ = tiny
    utm = {
        s: fmt.utm_array(fmt.list_images(root / "pitts30k" / "images" / s))
        for s in ("train", "val", "test")
    }
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        d = np.sqrt(((utm[a][:, None] - utm[b][None]) ** 2).sum(-1))
        assert d.min() > 50.0, (a, b)


def test_deterministic_and_independent_of_workers(tiny, tmp_path):
    """Also: the fixture wrote night-target and `again` did not, with the same tokyo-xs bytes."""
    root, _ = tiny
    again = tmp_path / "again"
    synthetic.generate(again, "tiny", seed=0, workers=1, datasets=("tokyo-xs",))
    assert _digests(again, "tokyo-xs") == _digests(root, "tokyo-xs")
    other = tmp_path / "other"
    synthetic.generate(other, "tiny", seed=1, workers=1, datasets=("tokyo-xs",))
    a, b = _digests(other, "tokyo-xs"), _digests(root, "tokyo-xs")
    assert len(a) == len(b)
    assert sum(a.get(k) == v for k, v in b.items()) < len(b) // 10


def test_refuses_to_overwrite(tiny):
    root, _ = tiny
    with pytest.raises(FileExistsError, match="overwrite"):
        synthetic.generate(root, "tiny", workers=1, datasets=("sf-xs",))
    with pytest.raises(FileExistsError, match="night-target"):
        synthetic.generate(root, "tiny", workers=1, datasets=("night-target",))


def test_bad_arguments():
    with pytest.raises(ValueError, match="time_of_day"):
        synthetic.render_view(585000.0, 4477000.0, 0.0, time_of_day="noon")
    with pytest.raises(ValueError, match="preset"):
        synthetic.plan("/nonexistent", preset="huge")
    with pytest.raises(ValueError, match="dataset"):
        synthetic.render_view(585000.0, 4477000.0, 0.0, dataset="oxford")


def _colour_histogram(img, bins=4):
    q = img.astype(np.int64) * bins // 256
    h = np.bincount(((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel(), minlength=bins**3)
    return h / h.sum()


def _thumbnail(img):
    """Zero-mean, unit-norm 6x8 colour thumbnail."""
    g = np.asarray(Image.fromarray(img).resize((8, 6), Image.BOX), np.float64)
    g = (g - g.mean((0, 1))).ravel()
    return g / (np.linalg.norm(g) + 1e-9)


def _similarity(a, b):
    """(colour-histogram intersection, thumbnail correlation)."""
    return np.minimum(_colour_histogram(a), _colour_histogram(b)).sum(), _thumbnail(a) @ _thumbnail(
        b
    )


def _street_points(root, n, rng):
    utm = fmt.utm_array(fmt.list_images(root / "pitts30k" / "images" / "train" / "database"))
    return utm[rng.choice(len(utm), n)]


def test_nearby_views_look_alike(tiny):
    """Views < 10 m apart with similar headings share more content than views > 25 m apart."""
    root, _ = tiny
    rng = np.random.default_rng(0)
    size = (60, 80)
    near, far = [], []
    utm_all = fmt.utm_array(fmt.list_images(root / "pitts30k" / "images" / "train" / "database"))
    for i in range(30):
        e, n = utm_all[rng.integers(len(utm_all))]
        heading = rng.uniform(0, 360)
        a = synthetic.render_view(e, n, heading, size=size, rng=i)
        for _ in range(50):  # a camera position 3-9 m away, on the street
            ang, r = rng.uniform(0, 2 * np.pi), rng.uniform(3, 9)
            e2, n2 = e + r * np.cos(ang), n + r * np.sin(ang)
            if synthetic.on_street(e2, n2, margin=2.5):
                break
        else:
            continue
        b = synthetic.render_view(
            e2, n2, heading + rng.uniform(-15, 15), size=size, rng=1000 + i, cars=1, people=1
        )
        d = np.sqrt(((utm_all - [e, n]) ** 2).sum(1))
        e3, n3 = utm_all[rng.choice(np.nonzero(d > 25)[0])]
        c = synthetic.render_view(
            e3, n3, heading + rng.uniform(-15, 15), size=size, rng=2000 + i, cars=1, people=1
        )
        near.append(_similarity(a, b))
        far.append(_similarity(a, c))
    assert len(near) >= 25
    near, far = np.array(near), np.array(far)
    assert near[:, 0].mean() > far[:, 0].mean() + 0.08, (near.mean(0), far.mean(0))
    assert np.mean(near[:, 0] > far[:, 0]) > 0.65
    assert near[:, 1].mean() > far[:, 1].mean() + 0.05, (near.mean(0), far.mean(0))


def test_night_is_darker_than_day(tiny):
    root, _ = tiny
    rng = np.random.default_rng(1)
    means = {t: [] for t in synthetic.TIMES_OF_DAY}
    for i, (e, n) in enumerate(_street_points(root, 8, rng)):
        h = rng.uniform(0, 360)
        for t, values in means.items():
            img = synthetic.render_view(e, n, h, time_of_day=t, rng=i, size=(48, 64))
            values.append(np.median(img.mean(-1)))  # the lit signs aside
    day, sunset, night = (np.array(means[t]) for t in synthetic.TIMES_OF_DAY)
    assert np.mean(night < day) >= 0.75, means  # even exposed up as a phone does at night
    assert night.mean() < 0.6 * day.mean() and night.mean() < 0.8 * sunset.mean(), means


def test_night_is_exposed_as_a_phone_exposes_it(tiny, monkeypatch):
    """At night the camera's gain lifts the frame's median towards the time of day's target
    (so facades show beside the lit signs), at most by its max_gain; by day nothing changes."""
    import dataclasses
    from vgjax.synthetic import styles
    root, _ = tiny
    points = _street_points(root, 6, np.random.default_rng(3))
    night = styles.TIMES["night"]
    assert night.auto_exposure > 0 and night.max_gain > 1
    assert styles.TIMES["day"].auto_exposure == 0 and styles.TIMES["sunset"].auto_exposure == 0

    def medians():
        return np.array([np.median(synthetic.render_view(
            e, n, 90.0 * i, time_of_day="night", rng=i, size=(48, 64)).mean(-1))
            for i, (e, n) in enumerate(points)])

    auto = medians()
    monkeypatch.setitem(styles.TIMES, "night", dataclasses.replace(night, auto_exposure=0.0))
    fixed = medians()
    assert np.all(auto > fixed * 1.5), (auto, fixed)
    assert auto.mean() > 35 and fixed.mean() < 25, (auto, fixed)


def test_city_file_says_what_built_it(tiny, tmp_path):
    """Each folder's city.json names the preset, seed, conditions and renderer version;
    `is_current` lists the folders that are missing or were built otherwise."""
    import json
    from vgjax.synthetic.build import CITY_FILE, CITY_VERSION, is_current
    root, _ = tiny
    assert is_current(root, "tiny", datasets=("pitts30k", "sf-xs", "tokyo-xs")) == []
    assert json.loads((root / "pitts30k" / CITY_FILE).read_text()) == {
        "preset": "tiny", "seed": 0, "varied_conditions": False, "version": CITY_VERSION}
    assert is_current(root, "tiny", seed=1, datasets=("pitts30k",)) == ["pitts30k"]
    assert is_current(root, "demo", datasets=("sf-xs",)) == ["sf-xs"]
    assert is_current(tmp_path, "tiny", datasets=("pitts30k",)) == ["pitts30k"]
    old = tmp_path / "pitts30k"
    (old / "images").mkdir(parents=True)
    (old / CITY_FILE).write_text(json.dumps({"preset": "tiny", "seed": 0,
                                             "varied_conditions": False, "version": 1}))
    assert is_current(tmp_path, "tiny", datasets=("pitts30k",)) == ["pitts30k"]


def test_render_is_a_function_of_its_arguments(tiny):
    root, _ = tiny
    e, n = _street_points(root, 1, np.random.default_rng(2))[0]
    a = synthetic.render_view(e, n, 30.0, size=(24, 32), rng=3)
    b = synthetic.render_view(e, n, 30.0, size=(24, 32), rng=3)
    assert a.dtype == np.uint8 and a.shape == (24, 32, 3)
    assert np.array_equal(a, b)


def test_night_subset_alone_matches(tiny, tmp_path):
    root, _ = tiny
    synthetic.generate(tmp_path, "tiny", seed=0, workers=1, datasets=("tokyo-night",))
    assert sorted(os.listdir(tmp_path)) == ["tokyo-night"]
    assert sorted(os.listdir(tmp_path / "tokyo-night")) == ["city.json", "images"]
    assert _digests(tmp_path, "tokyo-night") == _digests(root, "tokyo-night")


def test_night_target(tiny):
    """Unlabelled night views of the tokyo-xs district, > 100 m from its test database."""
    root, summary = tiny
    assert synthetic.DATASETS == ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")
    assert "night-target" in synthetic.ALL_OUTPUTS and "night-target" not in synthetic.DATASETS
    images = root / "night-target" / "images"
    names = sorted(os.listdir(images))
    assert len(names) >= 30 and all(n.endswith(".jpg") for n in names)
    n = len(names)
    assert summary["targets"]["night-target"] == {"images": n, "times": {"night": n}}
    assert {fmt.parse_fields(n)["note"] for n in names} == {"night"}
    assert len({fmt.parse_fields(n)["pano_id"] for n in names}) == len(names)

    def brightness(paths):
        return np.mean([np.asarray(Image.open(p), np.float64).mean() for p in paths])

    day = fmt.list_images(root / "pitts30k" / "images" / "test" / "queries")
    assert brightness([images / n for n in names]) < 0.7 * brightness(day)
    with Image.open(images / names[0]) as im:
        assert im.size == (80, 60) and im.mode == "RGB"

    target = np.array([fmt.parse_utm(n) for n in names])
    test_db = fmt.utm_array(fmt.list_images(root / "tokyo-xs" / "images" / "test" / "database"))
    d = np.sqrt(((target[:, None] - test_db[None]) ** 2).sum(-1))
    assert d.min() > 100.0, d.min()
    assert np.all(np.abs(target - test_db.mean(0)) < 1000.0)  # still the tokyo-xs district
    assert fmt.parse_fields(names[0])["utm_zone_number"] == "54"


def test_night_target_changes_no_other_view(tiny, tmp_path):
    """Planning night-target leaves every view of the four datasets as it was (so their bytes
    too), and night-target alone writes the same files as in the full build."""
    without = synthetic.plan("/out", "tiny", 0, synthetic.DATASETS)
    with_target = synthetic.plan("/out", "tiny", 0, synthetic.ALL_OUTPUTS)
    assert set(with_target) == set(without) | {"night-target"}
    assert all(with_target[name] == views for name, views in without.items())
    root, _ = tiny
    synthetic.generate(tmp_path, "tiny", seed=0, workers=1, datasets=("night-target",))
    assert sorted(os.listdir(tmp_path)) == ["night-target"]
    assert _digests(tmp_path, "night-target") == _digests(root, "night-target")


def test_cli_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path), "--datasets", "pitts30k,oxford"])
    assert "oxford" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path), "--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def test_varied_conditions_change_only_the_queries_looks(tiny, tmp_path, capsys):
    """--varied-conditions draws each query's capture conditions (the season from its time
    stamp's month) and leaves every position, file name and database image as it was."""
    plain = synthetic.plan("/out", "tiny", 0)
    varied = synthetic.plan("/out", "tiny", 0, varied_conditions=True)
    seasons = set()
    for name, splits in plain.items():
        for split, views in splits.items():
            for a, b in zip(views, varied[name][split], strict=True):
                assert a.conditions == synthetic.Conditions()
                assert dataclasses.replace(b, conditions=a.conditions) == a
                if "/database/" in a.path:
                    assert b.conditions == a.conditions
                    continue
                month = int(fmt.parse_fields(os.path.basename(b.path))["timestamp"][4:6])
                season = ("winter", "spring", "summer", "autumn")[(month % 12) // 3]
                assert b.conditions.season == season, (month, b.conditions)
                if b.time_of_day == "day":
                    assert 90 <= b.conditions.sun_azimuth <= 270
                    assert 0.8 <= b.conditions.exposure <= 1.2
                else:
                    assert b.conditions.sun_azimuth is None
                if b.time_of_day == "night":
                    assert b.conditions.overcast == 0.0
                seasons.add(b.conditions.season)
    assert seasons == set(synthetic.SEASONS)
    assert sum(v.conditions.overcast > 0.5 for v in varied["pitts30k"]["train"]) > 5

    assert synthetic.main(["--out", str(tmp_path), "--preset", "tiny", "--datasets", "sf-xs",
                           "--workers", "1", "--varied-conditions"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["varied_conditions"] is True
    root, summary = tiny
    assert summary["varied_conditions"] is False
    before, after = _digests(root, "sf-xs"), _digests(tmp_path, "sf-xs")
    assert before.keys() == after.keys()
    changed = {k.split(os.sep)[-2] for k in before if before[k] != after[k]}
    assert changed == {"queries"}
    assert sum(before[k] != after[k] for k in before) == 30


def test_conditions_change_the_light_and_the_trees(tiny):
    root, _ = tiny
    rng = np.random.default_rng(4)
    points = _street_points(root, 6, rng)
    render = lambda e, n, h, **kw: synthetic.render_view(
        e, n, h, size=(48, 64), rng=7, **kw
    ).astype(np.float64)
    default = [render(e, n, 90.0) for e, n in points]
    assert all(
        np.array_equal(a, render(e, n, 90.0, conditions=synthetic.Conditions()))
        for a, (e, n) in zip(default, points)
    )
    # An overcast sky is greyer: less spread between the colour channels in the top rows.
    overcast = [render(e, n, 90.0, conditions=synthetic.Conditions(overcast=1.0)) for e, n in points]
    spread = lambda imgs: np.mean([np.ptp(im[:4], axis=-1).mean() for im in imgs])
    assert spread(overcast) < 0.6 * spread(default)
    # The sun lights the other side of the street.
    east = [render(e, n, 0.0, conditions=synthetic.Conditions(sun_azimuth=90.0)) for e, n in points]
    west = [render(e, n, 0.0, conditions=synthetic.Conditions(sun_azimuth=270.0)) for e, n in points]
    assert np.mean([np.abs(a - b).mean() for a, b in zip(east, west)]) > 3.0
    # Winter thins and browns the broadleaf canopies: some views change, none gets greener.
    winter = [render(e, n, 90.0, conditions=synthetic.Conditions(season="winter")) for e, n in points]
    changed = [not np.array_equal(a, b) for a, b in zip(default, winter)]
    assert any(changed)
    green = lambda im: (im[..., 1] - im[..., [0, 2]].mean(-1)).mean()
    assert sum(map(green, winter)) < sum(map(green, default))


@pytest.mark.parametrize(
    "kwargs, word",
    [({"season": "monsoon"}, "season"), ({"overcast": 1.5}, "overcast"),
     ({"exposure": 0.0}, "exposure")],
)
def test_conditions_refuse_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        synthetic.Conditions(**kwargs)


# --------------------------------------------------------------------------------------------
# The geometry of the demo preset, from its planned positions (nothing rendered)
# --------------------------------------------------------------------------------------------
TEST_SETS = (("pitts30k", "test"), ("sf-xs", "test"), ("tokyo-xs", "test"), ("tokyo-night", "test"))


@pytest.fixture(scope="module")
def demo_stats():
    from vgjax.synthetic.stats import plan_stats

    return plan_stats("demo", seed=0)


def test_demo_test_sets_are_hard_to_guess(demo_stats):
    """A random ranking finds a positive first for under 1% of the queries on every test set,
    yet every query has a positive and every training query a hard one (10 m)."""
    counts = synthetic.PRESETS["demo"].counts
    for name, split in TEST_SETS:
        s = demo_stats[name][split]
        assert s["chance"]["R@1"] <= 1.0, (name, s)
        assert s["chance"]["R@5"] <= 5.0, (name, s)
        assert s["database"] == counts["tokyo-xs" if name == "tokyo-night" else name][split][0]
    assert demo_stats["tokyo-night"]["test"]["queries"] == counts["tokyo-xs"]["test"][1] // 3
    for name, splits in demo_stats.items():
        for split, s in splits.items():
            assert s["positives_25m"]["min"] >= 1, (name, split, s)
    train = demo_stats["pitts30k"]["train"]
    assert train["hard_positives_10m"]["min"] >= 1 and train["hard_positives_10m"]["mean"] >= 2


def test_demo_queries_look_where_the_database_looks():
    """Each query looks along a database view of its street (turned by at most `query_turn`)
    taken a few metres away, and the database views look both ways along the streets."""
    preset = synthetic.PRESETS["demo"]
    views = synthetic.plan("/planned", "demo", 0, ("pitts30k", "sf-xs", "tokyo-xs"))
    relative = set()
    for name, splits in views.items():
        for split, vs in splits.items():
            db = [v for v in vs if "/database/" in v.path]
            qs = [v for v in vs if "/queries/" in v.path]
            where = np.array([(v.east, v.north) for v in db])
            heading = np.array([v.heading for v in db])
            for q in qs:
                turn = np.abs((heading - q.heading + 180.0) % 360.0 - 180.0)
                metres = np.hypot(*(where - (q.east, q.north)).T)
                assert np.any((turn <= preset.query_turn + 1e-6) & (metres < 10.0)), (name, q)
            relative |= {round(h % 90.0) for h in heading}
    assert relative == {30, 60}  # 30 and 330 (mirrored) degrees from north or east


def test_tiny_keeps_its_geometry():
    """tiny: headings evenly spaced from a random start, queries looking anywhere."""
    tiny = synthetic.PRESETS["tiny"]
    assert tiny.street_headings == () and tiny.split_layout("train") == (9.0, (1, 1))
    views = synthetic.plan("/planned", "tiny", 0, ("sf-xs",))["sf-xs"]["test"]
    heading = np.array([v.heading for v in views if "/database/" in v.path]).reshape(-1, 4)
    steps = np.diff(heading, axis=1) % 360.0
    assert np.allclose(steps, 90.0)
    assert len({round(h % 90.0) for h in heading[:, 0]}) > 5


def test_preset_checks_its_headings():
    with pytest.raises(ValueError, match="street_headings"):
        dataclasses.replace(synthetic.PRESETS["demo"], street_headings=(30.0,))


def test_summary_reports_positives_and_chance(tiny):
    """The build's summary holds, per split, the positives per query and a random ranking's
    recalls of the written files: the same as planned and as `chance_of_folder`."""
    from vgjax.eval.recalls import chance_of_folder
    from vgjax.synthetic.stats import plan_stats

    root, summary = tiny
    planned = plan_stats("tiny", seed=0)
    for name, splits in planned.items():
        for split, s in splits.items():
            got = summary["datasets"][name][split]
            assert got["positives_25m"] == s["positives_25m"], (name, split)
            assert got["hard_positives_10m"] == s["hard_positives_10m"], (name, split)
            folder = chance_of_folder(root / name / "images" / split)
            for k, v in got["chance"].items():
                assert v == pytest.approx(s["chance"][k], abs=1e-3)
                assert v == pytest.approx(folder[k], abs=1e-3)


def test_cli_stats_only(capsys):
    """--stats-only renders nothing: the table on stderr, its JSON on stdout."""
    assert synthetic.main(["--preset", "demo", "--stats-only", "--datasets", "sf-xs"]) == 0
    out = capsys.readouterr()
    stats = json.loads(out.out)["datasets"]
    assert list(stats) == ["sf-xs"] and stats["sf-xs"]["test"]["database"] == 1200
    assert "chance R@1" in out.err and "sf-xs/test" in out.err
    with pytest.raises(SystemExit):
        synthetic.main(["--preset", "tiny"])
    assert "--out" in capsys.readouterr().err
