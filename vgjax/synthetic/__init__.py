"""A synthetic city: place-recognition datasets in the standard folder format, built offline.

    python -m vgjax.synthetic --out data --preset demo [--seed 0] [--workers N]

writes `pitts30k` (train/val/test), `sf-xs`, `tokyo-xs` and `tokyo-night` (test only) under
`--out`, each as `<name>/images/<split>/<database|queries>/@east@north@...@.jpg`, and the
unlabelled `night-target/images/` (night query-like views of the tokyo-xs district, far from
its test area, for domain adaptation; never tested on). With `--format gsv_cities` it writes
instead the training district as a GSV-Cities folder, `<out>/gsv-cities/{Dataframes,Images}`,
places of 4 or more views each (`gsv`); with `--format msls|nordland|npy_gt|sped|stlucia|svox`,
a pitts30k split laid out as that benchmark, read back by `vgjax.data.readers` (`benchmarks`).

The city is a grid of streets whose buildings (heights, roof lines, facade colour and
material, window grids, doors, shop signs) and street furniture (trees, lamp and utility
poles) are pure functions of integer location ids and the seed, so every camera that sees a
place sees the same thing. Views are rendered by a column ray-caster in numpy: each image
column casts one ray in the 2D street map against the axis-aligned block footprints; each row
of that column is then wall, ground or sky by perspective. Trees, poles and the transient
occluders (cars, people) are depth-tested billboards.

Database images are day-time views on a regular grid of street positions, several headings
each: in `tiny`, headings evenly spaced from a random start (like a panorama cut into
views); in `demo` and `full`, two views looking diagonally along the street (ahead on one
side, back on the other), on every other street of large test areas, positions 15 m apart,
so that few database images lie within 25 m of a query and a random ranking's R@1 stays
under 1% (`stats`; the command line prints it). Queries differ in position (up to half the
spacing along the street and a few metres across), heading (in `demo` and `full` along a
database view of their street, turned by up to 20 degrees), field of view, pitch,
occluders, camera response and time of day (`day`, `sunset`, `night`, written in the file
name's `note` field). With `--varied-conditions` they also
differ in capture conditions (`Conditions`: sun position, overcast sky, exposure, the season
of their time stamp's month, which colours and thins the broadleaf trees); the database
views, every position and every file name stay the same.

Every image draws its randomness from (seed, dataset, split, role, index), so the output is
byte-identical for a seed whatever the number of worker processes.

Modules: `hashing` (ids -> uniform floats), `styles` (districts, cameras, times of day),
`layout` (the street grid), `surfaces` (facades, ground), `sprites` (trees, poles, cars,
people), `render` (the ray-caster), `specs` (datasets, targets, presets), `views` (planning,
file names), `gsv` (the GSV-Cities-format training district), `benchmarks` (the
benchmarks' layouts), `stats` (positives per
query, a random ranking's recalls), `build` (`generate`: workers, writing), `cli` (`main`).
"""

from vgjax.synthetic.build import generate
from vgjax.synthetic.cli import main
from vgjax.synthetic.gsv import generate_gsv, plan_gsv
from vgjax.synthetic.layout import City, make_city, street_free
from vgjax.synthetic.render import render_view
from vgjax.synthetic.specs import (
    ALL_OUTPUTS,
    DATASET_SPECS,
    DATASETS,
    NIGHT_SUBSET,
    PRESETS,
    TARGET_SPECS,
    TARGETS,
    DatasetSpec,
    Preset,
    TargetSpec,
)
from vgjax.synthetic.stats import plan_stats, split_stats
from vgjax.synthetic.styles import (
    CAMERAS,
    DISTRICTS,
    SEASONS,
    TIMES,
    TIMES_OF_DAY,
    Camera,
    Conditions,
    District,
    TimeOfDay,
)
from vgjax.synthetic.views import (
    View,
    on_street,
    plan,
    query_conditions,
    street_positions,
    utm_to_latlon,
)

__all__ = [
    "ALL_OUTPUTS",
    "CAMERAS",
    "DATASETS",
    "DATASET_SPECS",
    "DISTRICTS",
    "NIGHT_SUBSET",
    "PRESETS",
    "SEASONS",
    "TARGETS",
    "TARGET_SPECS",
    "TIMES",
    "TIMES_OF_DAY",
    "Camera",
    "City",
    "Conditions",
    "DatasetSpec",
    "District",
    "Preset",
    "TargetSpec",
    "TimeOfDay",
    "View",
    "generate",
    "generate_gsv",
    "main",
    "make_city",
    "on_street",
    "plan",
    "plan_gsv",
    "plan_stats",
    "query_conditions",
    "render_view",
    "split_stats",
    "street_free",
    "street_positions",
    "utm_to_latlon",
]
