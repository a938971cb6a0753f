"""vgjax.progress: bars with rate and ETA on a terminal, nothing elsewhere."""
import io
import re
from pathlib import Path

import numpy as np

from vgjax import progress
from vgjax.eval.search import exact_search
from vgjax.eval.store import DescriptorStore

VGJAX = Path(__file__).resolve().parent.parent / "vgjax"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_shows_rate_and_eta_on_a_terminal_only():
    tty = Terminal()
    assert progress.on_terminal(tty) and not progress.on_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()  # isatty raises
    assert not progress.on_terminal(closed) and not progress.on_terminal(object())
    assert list(progress.bar(range(5), desc="work", unit="img", stream=tty,
                             leave=True)) == list(range(5))
    # count, elapsed<remaining (the ETA), rate
    assert re.search(r"work: 100%.* 5/5 \[\d\d:\d\d<\d\d:\d\d, .*img/s\]", tty.getvalue())
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        with progress.bar(total=3, desc="quiet", stream=stream, enabled=enabled) as bar:
            bar.update(3)
        assert stream.getvalue() == ""


def test_blocked_search_reports_on_stderr_when_it_is_a_terminal(monkeypatch):
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    store = DescriptorStore(db.shape, np.float32)
    store.write(0, db)
    tty = Terminal()
    monkeypatch.setattr("sys.stderr", tty)
    _, idx = exact_search(store, q, 3, chunk_bytes=10 * 8 * 4, backend="faiss-cpu")
    assert "searching 6 queries" in tty.getvalue()
    expected = np.argsort(((q[:, None] - db[None]) ** 2).sum(-1), axis=1)[:, :3]
    np.testing.assert_array_equal(idx, expected)


def test_every_bar_goes_through_the_helper():
    direct = [p.relative_to(VGJAX).as_posix() for p in VGJAX.rglob("*.py")
              if re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)]
    assert direct == ["progress.py"]
