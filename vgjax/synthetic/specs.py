"""What is generated: the datasets (district, origin, cameras, query times) and the presets."""

from __future__ import annotations

import dataclasses

from vgjax.synthetic.styles import TIMES_OF_DAY

# The evaluation datasets (what is tested on).
DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A labelled dataset: its district, where it lies, its splits, cameras and query times."""

    name: str
    index: int
    district: str
    origin: tuple[float, float]  # UTM (east, north) of the local (0, 0)
    zone: tuple[int, str]
    splits: tuple[str, ...]
    database_camera: str
    query_camera: str
    query_times: tuple[str, ...]  # cycled over the queries: equal shares


DATASET_SPECS = {
    "pitts30k": DatasetSpec(
        "pitts30k",
        0,
        "pitts",
        (584150.0, 4476350.0),
        (17, "T"),
        ("train", "val", "test"),
        "streetview",
        "streetview-query",
        ("day",),
    ),
    "sf-xs": DatasetSpec(
        "sf-xs",
        1,
        "sf",
        (550400.0, 4181300.0),
        (10, "S"),
        ("test",),
        "streetview",
        "phone-sf",
        ("day",),
    ),
    "tokyo-xs": DatasetSpec(
        "tokyo-xs",
        2,
        "tokyo",
        (386200.0, 3948600.0),
        (54, "S"),
        ("test",),
        "streetview",
        "phone-tokyo",
        TIMES_OF_DAY,
    ),
}
# tokyo-night is the night third of tokyo-xs's queries with the same database (as the real one).
NIGHT_SUBSET = ("tokyo-night", "tokyo-xs")
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
ROLE_INDEX = {"database": 0, "queries": 1}


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """An unlabelled folder of query-like views for domain adaptation, never tested on: views
    in `source`'s district and query camera at `time_of_day`, in an area `gap` metres beyond
    the source's test area (so that no target image shows a test place)."""

    name: str
    source: str  # the dataset whose district, origin and query camera the views share
    time_of_day: str
    gap: float  # metres between the source's test area and the target area
    key: int  # in place of the split index in the views' random ids (splits use 0..2)


TARGET_SPECS = {"night-target": TargetSpec("night-target", "tokyo-xs", "night", 150.0, 3)}
TARGETS = tuple(TARGET_SPECS)
ALL_OUTPUTS = DATASETS + TARGETS  # every folder `generate` can write
TARGET_MIN_DISTANCE = 100.0  # metres from a target view to the nearest test database image


@dataclasses.dataclass(frozen=True)
class Preset:
    """Image size, sampling and counts of one build of the city."""

    size: tuple[int, int]  # (H, W) of the written images
    supersample: int  # rendered at size * supersample, then box-filtered
    headings: int  # database views per position
    spacing: float  # metres between database positions along a street
    query_offset: float  # maximum offset along the street of a query (m)
    counts: dict  # dataset -> split -> (database, queries)
    quality: int = 90  # JPEG quality
    target_images: int = 30  # images in each target folder (night-target)
    # Queries (and target images) captured under other conditions than the database: where
    # the sun stands, overcast, exposure, season (`views.query_conditions`); False (every
    # preset's default) renders them under the database's clear summer day.
    varied_conditions: bool = False
    # The database headings of every position, in degrees clockwise from its street's
    # direction (north on a north-south street, east on an east-west one), one per heading;
    # each query then looks along one of them, turned by at most `query_turn` degrees, so
    # that a database image near it sees what it sees. Empty: `headings` evenly spaced from
    # a random start at each position, and queries look anywhere.
    street_headings: tuple[float, ...] = ()
    query_turn: float = 20.0
    # Metres between the training database's positions (None: `spacing`); training queries
    # keep a database image within 10 m (hard positives), so they need a denser database
    # than the test sets, whose sparse positions keep a random ranking's recalls low.
    train_spacing: float | None = None
    # (n, m): the database of the validation and test splits (and the target folders) lies on
    # every n-th north-south and every m-th east-west street only, so that fewer of its
    # positions lie within 25 m of a query at a crossing; training uses every street.
    streets: tuple[int, int] = (1, 1)
    # `--format gsv_cities` (`gsv.plan_gsv`): places in the training area and the (lo, hi)
    # number of views of each (at least 4, the GSV-Cities minimum)
    gsv_places: int = 16
    gsv_views: tuple[int, int] = (4, 6)

    def __post_init__(self):
        if self.street_headings and len(self.street_headings) != self.headings:
            raise ValueError(f"street_headings {self.street_headings}: expected {self.headings}"
                             " angles, one per heading")
        if not 4 <= self.gsv_views[0] <= self.gsv_views[1]:
            raise ValueError(f"gsv_views {self.gsv_views}: expected 4 <= lo <= hi")

    def split_layout(self, split: str) -> tuple[float, tuple[int, int]]:
        """(metres between database positions along a street, `streets`) of `split`."""
        if split == "train":
            return self.train_spacing or self.spacing, (1, 1)
        return self.spacing, self.streets


PRESETS = {
    "tiny": Preset(
        size=(60, 80),
        supersample=2,
        headings=4,
        spacing=9.0,
        query_offset=6.0,
        counts={
            "pitts30k": {"train": (96, 36), "val": (72, 30), "test": (72, 30)},
            "sf-xs": {"test": (72, 30)},
            "tokyo-xs": {"test": (72, 30)},
        },
    ),
    # demo and full: sparse test databases over large areas, so that a random ranking's
    # recalls stay low (R@1 under 1% in demo: few of a test database's images lie within
    # 25 m of any one query). Each position has two views looking diagonally along its street
    # (ahead on one side, back on the other, like a car's corner cameras), and each query
    # looks along one of them, so the database images near it see what it sees.
    "demo": Preset(
        size=(120, 160),
        supersample=2,
        headings=2,
        spacing=15.0,
        query_offset=7.5,
        counts={
            "pitts30k": {"train": (1600, 500), "val": (800, 300), "test": (1200, 300)},
            "sf-xs": {"test": (1200, 300)},
            "tokyo-xs": {"test": (1200, 300)},
        },
        target_images=300,
        gsv_places=400,
        gsv_views=(4, 8),
        street_headings=(30.0, 210.0),
        query_turn=20.0,
        train_spacing=10.0,
        streets=(2, 2),
    ),
    "full": Preset(
        size=(480, 640),
        supersample=1,
        headings=2,
        spacing=15.0,
        query_offset=7.5,
        counts={
            "pitts30k": {"train": (10000, 7416), "val": (10000, 7608), "test": (10000, 6816)},
            "sf-xs": {"test": (27191, 1000)},
            "tokyo-xs": {"test": (12771, 315)},
        },
        target_images=315,
        gsv_places=4000,
        gsv_views=(4, 8),
        street_headings=(30.0, 210.0),
        query_turn=20.0,
        train_spacing=10.0,
        streets=(2, 2),
    ),
}

