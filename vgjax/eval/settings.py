"""The `test` section (and each `evals.<name>` entry over it): its checks and its frozen,
typed settings (`TestSettings`). `vgjax.eval.evaluators` checks the `evals` entries."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from vgjax.config import require
from vgjax.config.settings import Settings
from vgjax.data.format import list_images
from vgjax.data.ops import CROP_RESIZES
from vgjax.eval.methods import MULTISCALE, TEST_METHODS
from vgjax.eval.search import INDEXES


@dataclasses.dataclass(frozen=True)
class TestSettings(Settings):
    method: str = "hard_resize"
    recall_values: tuple[int, ...] = (1, 5, 10, 20)
    positive_dist: float = 25.0
    batch_size: int = 32
    scales: tuple[float, ...] = (1.0,)
    multiscale_method: str = "avg"
    multiscale_database: bool = False
    multiscale_renormalize: bool = False
    pca_dim: int = 0
    pca_dataset: str = ""
    pca_native_size: bool = True
    index: str = "flat"
    ivfpq_nlist: int = 1024
    ivfpq_m: int = 64
    store_float16: bool = False
    save_predictions: bool = True
    num_pictures: int = 0
    pictures_only_wrong: bool = False
    pictures_topk: int = 5
    majority_weight: float = 0.01
    central_crop_resize: str = "nearest"
    domains: tuple[str, ...] = ("day", "sunset", "night")
    pca_max_images: int = 16384
    ivfpq_nprobe: int = 16
    descriptors_dir: str = ""
    descriptors_in_memory_gb: float = 4.0
    search_chunk_mb: float = 256.0

    __test__ = False  # not a pytest class


def check_test(test, option: str = "test") -> None:
    """Refuses bad `test.*` settings (a section or an entry's merged settings)."""
    TEST_METHODS.check(test.method)
    MULTISCALE.check(test.multiscale_method)
    INDEXES.check(test.index)
    rv = list(test.recall_values)
    require(len(rv) > 0 and all(n >= 1 for n in rv), f"{option}.recall_values",
            f"must be positive integers, got {rv}")
    scales = list(test.scales)
    require(len(scales) > 0 and all(f > 0 for f in scales), f"{option}.scales",
            f"must be positive factors of the model resolution, got {scales}")
    s = TestSettings.from_section(test)
    require(s.positive_dist > 0, f"{option}.positive_dist", "must be > 0")
    require(s.batch_size >= 1, f"{option}.batch_size", "must be >= 1")
    require(s.pca_dim >= 0, f"{option}.pca_dim", "must be >= 0 (0 = no PCA)")
    require(s.pictures_topk >= 1, f"{option}.pictures_topk", "must be >= 1")
    for name in ("ivfpq_nlist", "ivfpq_m", "ivfpq_nprobe", "pca_max_images"):
        require(s[name] >= 1, f"{option}.{name}", f"must be >= 1, got {s[name]}")
    require(s.num_pictures >= 0, f"{option}.num_pictures", "must be >= 0 (0 = none)")
    require(s.majority_weight >= 0, f"{option}.majority_weight",
            f"must be >= 0 (the distance reduction per vote), got {s.majority_weight}")
    require(s.descriptors_in_memory_gb >= 0, f"{option}.descriptors_in_memory_gb",
            "must be >= 0 (0 = descriptors always on disk)")
    require(s.search_chunk_mb > 0, f"{option}.search_chunk_mb", "must be > 0")
    require(s.central_crop_resize in CROP_RESIZES, f"{option}.central_crop_resize",
            f"unknown value {s.central_crop_resize!r} (accepted: {', '.join(CROP_RESIZES)})")


def check_pca(settings, descriptor_size: int, option: str = "test") -> None:
    """`pca_dim` must fit the descriptor and the images PCA is fitted on."""
    s = TestSettings.from_section(settings)
    dim = s.pca_dim
    if dim <= 0:
        return
    require(dim <= descriptor_size, f"{option}.pca_dim",
            f"({dim}) exceeds the model's descriptor size {descriptor_size}")
    require(dim < s.pca_max_images, f"{option}.pca_dim",
            f"({dim}) must be below {option}.pca_max_images ({s.pca_max_images}), the "
            "number of descriptors it is fitted on")
    if s.pca_dataset:
        folder = Path(s.pca_dataset)
        require(folder.is_dir(), f"{option}.pca_dataset", f"{folder} is not a folder")
        n = len(list_images(folder))
        require(dim < n, f"{option}.pca_dim",
                f"({dim}) must be below the {n} images of {option}.pca_dataset={folder}")
