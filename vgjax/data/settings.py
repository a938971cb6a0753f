"""The `data` section: its checks and its frozen, typed settings (`DataSettings`)."""
from __future__ import annotations

import dataclasses

from vgjax.config import require, require_positive
from vgjax.config.settings import Settings
from vgjax.data.cache import CACHE_MODES
from vgjax.data.ops import RESAMPLING_MODES
from vgjax.data.places import PLACE_FORMATS
from vgjax.data.readers import READERS, reader_name
from vgjax.data.sources import SOURCES


@dataclasses.dataclass(frozen=True)
class DataSettings(Settings):
    root: str = "data"
    train_dataset: str = "pitts30k"
    test_datasets: tuple[str, ...] = ("pitts30k",)
    source: str = "folder"
    tfds_dir: str = ""
    format: str = "folder"
    resize: tuple[int, ...] = (480, 640)
    num_workers: int = 8
    prefetch: int = 2
    cache_decoded: str = "none"
    eval_resize: str = "float"
    resize_antialias: bool = False
    jpeg_draft: bool = False
    check_images: bool = True
    train_query_crop: bool = True
    soft_positives_dist: float = 25.0
    hard_positives_dist: float = 10.0

    @classmethod
    def from_config(cls, config) -> "DataSettings":
        return cls.from_section(config.data)


def check_data(config) -> None:
    """Refuses a bad `data` section, naming the option."""
    raw = config.data
    require(len(raw.resize) == 2 and all(s > 0 for s in raw.resize), "data.resize",
            f"expected (H, W) positive integers, got {raw.resize!r}")
    require(raw.soft_positives_dist >= raw.hard_positives_dist > 0, "data.hard_positives_dist",
            "must be > 0 and <= data.soft_positives_dist")
    require(len(raw.test_datasets) > 0, "data.test_datasets", "is empty")
    SOURCES.check(raw.source)
    check_format(raw.format, raw.source)
    require(raw.cache_decoded in CACHE_MODES, "data.cache_decoded",
            f"unknown value {raw.cache_decoded!r} (accepted: {', '.join(CACHE_MODES)}, true = "
            "host, false = none)")
    require(raw.eval_resize in RESAMPLING_MODES, "data.eval_resize",
            f"unknown value {raw.eval_resize!r} (accepted: {', '.join(RESAMPLING_MODES)})")
    require_positive(DataSettings.from_section(raw), "data", ("num_workers", "prefetch"))


def check_format(data_format: str, source: str = "folder") -> None:
    """`data.format` names a place-batch format (`PLACE_FORMATS`, its arguments checked
    there), an evaluation reader (`READERS`, no arguments) or both; only @UTM folders
    come as TFDS copies."""
    name = str(data_format).split("(", 1)[0].strip()
    require(name in PLACE_FORMATS or name in READERS, "data.format",
            f"unknown value {data_format!r} (accepted: {', '.join(PLACE_FORMATS.names())}) "
            f"for place batches, or an evaluation reader: {', '.join(READERS.names())}")
    (PLACE_FORMATS if name in PLACE_FORMATS else READERS).check(data_format)
    require(source == "folder" or reader_name(data_format) == "folder", "data.format",
            f"{data_format!r}: data.source={source!r} holds @UTM folders only")
