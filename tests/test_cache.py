import numpy as np

from conftest import write_image
from vgjax.data.cache import DecodedImages
from vgjax.data.pipeline import image_size, load_image
from vgjax.data.sources import ImageReader


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


def test_reader_serves_cached_size_and_falls_back(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        write_image(str(p), (20, 28), seed=i)
        paths.append(str(p))
    calls = []

    def fallback(path, size=None):
        calls.append((path, size))
        return load_image(path, size)

    decoded = DecodedImages(paths[:2], (12, 16), load_fn=lambda p: fallback(p, (12, 16)))
    calls.clear()
    reader = decoded.reader(ImageReader(fallback, image_size))
    assert np.array_equal(reader(paths[1], (12, 16)), load_image(paths[1], (12, 16)))
    assert calls == []                                    # served from memory
    assert reader.loader((10, 10))(paths[0]).shape == (10, 10, 3)
    assert reader(paths[2], (12, 16)).shape == (12, 16, 3)
    assert calls == [(paths[0], (10, 10)), (paths[2], (12, 16))]
    assert reader.size(paths[2]) == (20, 28)  # from the header, through the source
