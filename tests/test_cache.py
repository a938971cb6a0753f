import numpy as np

from conftest import write_image
from vgjax.data.cache import DecodedImages
from vgjax.data.pipeline import load_image


def test_decoded_images_in_memory_and_on_disk(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / "imgs" / f"{i}.png"
        write_image(str(p), (20, 28), seed=i)
        paths.append(str(p))
    want = np.stack([load_image(p, (12, 16)) for p in paths])
    mem = DecodedImages(paths, (12, 16), batch_size=2, num_workers=2)
    assert np.array_equal(mem[np.arange(5)], want)
    assert np.array_equal(mem[[4, 0, 4]], want[[4, 0, 4]])
    assert np.array_equal(mem.by_path([paths[2]]), want[2:3])
    disk = DecodedImages(paths, (12, 16), cache_dir=tmp_path / "cache", batch_size=2)
    files = list((tmp_path / "cache").glob("decoded-12x16-*.npy"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp*"))
    assert np.array_equal(disk[[3, 1]], want[[3, 1]])
    mtime = files[0].stat().st_mtime_ns
    again = DecodedImages(paths, (12, 16), cache_dir=tmp_path / "cache")
    assert files[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    assert np.array_equal(again[[0]], want[[0]])
