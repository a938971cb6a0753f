"""`OUT/pictures/<query stem>.jpg`: a query beside its top-k matches, with each match's
descriptor distance, confidence and coordinates written under it.

Drawn on matplotlib's Agg canvas (no display needed); images that cannot be read any more
(a saved index whose database moved) are drawn grey.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vgjax.data.pipeline import load_image
from vgjax.localize.coordinates import Places
from vgjax.localize.predictions import Predictions

THUMBNAIL_SIZE = (120, 160)  # (H, W) each image is drawn at
JPEG_QUALITY = 85


def thumbnail(path: str, size=THUMBNAIL_SIZE) -> np.ndarray:
    try:
        return load_image(path, size)
    except OSError:
        return np.full((*size, 3), 128, np.uint8)


def place_text(system: str, values) -> str:
    a, b = values
    if not (np.isfinite(a) and np.isfinite(b)):
        return "no coordinates"
    if system == "latlon":
        return f"{a:.6f}, {b:.6f}"
    return f"E {a:.1f}  N {b:.1f}"


def picture_names(queries: Sequence[str]) -> list[str]:
    """`<stem>.jpg` per query; a stem seen before gets `_2`, `_3`, ... appended."""
    seen: dict[str, int] = {}
    names = []
    for q in queries:
        stem = Path(q).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.jpg" if seen[stem] == 1 else f"{stem}_{seen[stem]}.jpg")
    return names


def save_query_pictures(preds: Predictions, database_paths: Sequence[str],
                        database: Places, out_dir: str | os.PathLike) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metres = preds.metres(database)
    places = preds.match_places(database)
    written = []
    for q, (query, name) in enumerate(zip(preds.queries, picture_names(preds.queries))):
        fig = Figure(figsize=(1.9 * (preds.k + 1), 2.25))
        FigureCanvasAgg(fig)
        axes = np.atleast_1d(fig.subplots(1, preds.k + 1))
        axes[0].imshow(thumbnail(query))
        axes[0].set_title(f"query {q + 1}", fontsize=8, fontweight="bold")
        qplace = preds.query_places.values[q]
        axes[0].set_xlabel(Path(query).name[:28] + (
            "\n" + place_text(database.system, qplace) if np.isfinite(qplace).all() else ""),
            fontsize=6)
        for r in range(preds.k):
            ax = axes[r + 1]
            row = int(preds.indices[q, r])
            ax.imshow(thumbnail(database_paths[row]))
            ax.set_title(f"#{r + 1}  conf {preds.confidences[q, r]:.2f}", fontsize=8)
            label = (f"dist {preds.distances[q, r]:.4g}\n"
                     f"{place_text(database.system, places[q, r])}")
            if np.isfinite(metres[q, r]):
                label += f"\n{metres[q, r]:.0f} m from the query"
            ax.set_xlabel(label, fontsize=6)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout(pad=0.3)
        path = out_dir / name
        fig.savefig(path, dpi=90, pil_kwargs={"quality": JPEG_QUALITY})
        written.append(path)
    return written
