"""The paired comparison of two evaluations (`python -m vgjax.eval.compare`): counts of the
queries one model finds and the other misses, the exact McNemar p-value, alignment of files
whose rows come in another order, and the errors."""
import math
from pathlib import Path

import numpy as np
import pytest

from vgjax.eval import compare as cmp


def _binomial_two_sided(k, n):
    """The exact test by hand: P(X <= min) + P(X >= max) for X ~ Binomial(n, 1/2)."""
    lo = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(lo + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("a,b", [(0, 0), (3, 0), (0, 3), (10, 4), (33, 64), (50, 50), (1, 20)])
def test_mcnemar_p_is_the_exact_binomial_test(a, b):
    p = cmp.mcnemar_p(a, b)
    assert p == pytest.approx(1.0 if a + b == 0 else _binomial_two_sided(a, a + b), rel=1e-9)
    assert cmp.mcnemar_p(b, a) == pytest.approx(p)
    with pytest.raises(ValueError, match=">= 0"):
        cmp.mcnemar_p(-1, 2)


def _predictions(path: Path, query_names, db_names, query_utm, db_utm, topk):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, query_paths=np.asarray(query_names), db_paths=np.asarray(db_names),
             topk_indices=np.asarray(topk, np.int64),
             topk_distances=np.zeros(np.shape(topk), np.float32),
             query_utm=np.asarray(query_utm, np.float64), db_utm=np.asarray(db_utm, np.float64),
             recall_values=np.array([1, 2]), method=np.array("hard_resize"))
    return path


@pytest.fixture
def pair(tmp_path):
    """Queries 0..5 at x = 0, 100, ..; database image j at x = 100 * j (image j is query
    j's only positive) and far-away images 6, 7. A finds queries 0-3 at rank 1, query 4 at
    rank 2; B finds query 0 at rank 1, queries 1 and 5 at rank 2. B's file lists the queries
    and the database in another order (and another root)."""
    q_utm = [(100.0 * i, 0.0) for i in range(6)]
    db_utm = [(100.0 * j, 0.0) for j in range(6)] + [(5000.0, 0.0), (9000.0, 0.0)]
    qn = [f"/data/a/queries/q{i}.jpg" for i in range(6)]
    dn = [f"/data/a/database/d{j}.jpg" for j in range(8)]
    far = 6
    top_a = [[0, far], [1, far], [2, far], [3, far], [far, 4], [far, 7]]
    top_b = [[0, far], [far, 1], [far, 7], [far, 7], [far, 7], [7, 5]]
    a = _predictions(tmp_path / "A" / "predictions" / "city.npz", qn, dn, q_utm, db_utm, top_a)
    qperm, dperm = np.array([3, 0, 5, 1, 4, 2]), np.array([7, 2, 0, 5, 1, 6, 3, 4])
    inverse = np.argsort(dperm)
    top_b_perm = inverse[np.asarray(top_b)][qperm]
    b = _predictions(tmp_path / "B" / "predictions" / "city.npz",
                     [qn[i].replace("/data/a", "/copy") for i in qperm],
                     [dn[j].replace("/data/a", "/copy") for j in dperm],
                     np.asarray(q_utm)[qperm], np.asarray(db_utm)[dperm], top_b_perm)
    return a, b


def test_paired_recalls_count_the_discordant_queries(pair):
    a, b = pair
    r1, r2 = cmp.paired_recalls(a, b, (1, 2))
    assert (r1.dataset, r1.n, r1.queries) == ("city", 1, 6)
    assert r1.recall_a == pytest.approx(100 * 4 / 6) and r1.recall_b == pytest.approx(100 / 6)
    assert (r1.only_a, r1.only_b) == (3, 0)   # queries 1, 2, 3
    assert r1.p_value == pytest.approx(0.25)
    assert (r2.only_a, r2.only_b) == (3, 1)   # A: 2, 3 and 4 (at rank 2); B: 5
    assert r2.recall_a == pytest.approx(100 * 5 / 6) and r2.recall_b == pytest.approx(50.0)
    assert r1.verdict(0.05) == "=" and r1.verdict(0.3) == "A"
    # the other way round: the same counts swapped
    s1, s2 = cmp.paired_recalls(b, a, (1, 2))
    assert (s1.only_a, s1.only_b, s2.only_a, s2.only_b) == (0, 3, 1, 3)
    assert s1.verdict(0.3) == "B"


def test_compare_folders_and_the_cli(pair, capsys):
    a, b = pair
    rows = cmp.compare(a.parents[1], b.parents[1], (1, 2))
    assert [(r.dataset, r.n) for r in rows] == [("city", 1), ("city", 2)]
    assert cmp.compare(a, b.parent, (1,))[0] == rows[0]   # one file against a folder of files
    assert cmp.main([str(a.parents[1]), str(b.parents[1]), "--recall-values", "1", "2",
                     "--alpha", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "| city | R@1 | 6 | 66.7 | 16.7 | +50.0 | 3 | 0 | 0.25 | A |" in out
    assert "| city | R@2 | 6 | 83.3 | 50.0 | +33.3 | 3 | 1 | 0.625 | no clear difference |" in out


def test_compare_refuses_what_cannot_be_paired(pair, tmp_path, capsys):
    a, b = pair
    with np.load(b) as z:
        other = {k: z[k] for k in z.files}
    other["query_paths"] = other["query_paths"][:5]
    other["topk_indices"] = other["topk_indices"][:5]
    np.savez(tmp_path / "short.npz", **other)
    with pytest.raises(ValueError, match="do not hold the same queries"):
        cmp.paired_recalls(a, tmp_path / "short.npz")
    with pytest.raises(ValueError, match="cannot compare R@5"):
        cmp.paired_recalls(a, b, (1, 5))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a predictions file"):
        cmp.paired_recalls(a, tmp_path / "bad.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no predictions"):
        cmp.compare(a, tmp_path / "empty")
    with pytest.raises(ValueError, match="no predictions of other"):
        cmp.compare(a, b, (1,), datasets=["other"])
    assert cmp.main([str(a), str(tmp_path / "missing")]) == 2
    assert "missing: no such predictions file or folder" in capsys.readouterr().err
