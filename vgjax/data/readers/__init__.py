"""Evaluation readers: how a benchmark's files become a `Split` with its protocols.

`READERS` is keyed by `data.format` names, like the place-batch formats of
`vgjax.data.places` (`PLACE_FORMATS`); a name may have a place reader, an evaluation reader
or both (`folder`). Each reader is `read(data_cfg, dataset, split) -> Split`, `dataset`
being the dataset's folder, and checks every file it names (ground-truth lists, images,
counts) before any image is described, raising a one-line `DatasetFormatError` naming the
file. Its split carries one `QuerySet` per protocol (`vgjax.data.protocol`), except the
folder reader's, scored by UTM distance at `test.positive_dist`:

- `folder`: the @UTM folders (`vgjax.data.dataset.load_split`);
- `sped`, `stlucia`, `svox`: @UTM folders as VPR-methods-evaluation distributes them, with
  their 25 m rule; SVOX's condition folders as separate query sets (`folders`);
- `npy_gt`: `<name>_dbImages.npy`, `<name>_qImages.npy`, `<name>_gt.npy` (`npy_gt`);
- `msls`: Mapillary SLS val, the official rule and the `msls_val` subset (`msls`);
- `nordland`: frame sequences, tolerances 1 and 10 frames (`nordland`).
"""
from __future__ import annotations

from vgjax.data.dataset import Split
from vgjax.registry import Registry

READERS = Registry("data.format", fixed=("data_cfg", "dataset", "split"))
# ends the refusal of a split a benchmark does not have (e.g. training on data.format=msls)
ENTRY_HINT = ("; to train on another format and evaluate on this one, name it in the "
              "evaluator entry (evals.<name>.format) rather than in data.format")


def reader_name(data_format: str, override: str = "") -> str:
    """The evaluation reader of a `data.format` spec (or of an entry's `format`): its name
    if it has one, else `folder` (a training-only format such as `gsv_cities` is evaluated
    on @UTM folders)."""
    if override:
        READERS.get(override)
        return override
    name = str(data_format).split("(", 1)[0].strip()
    return name if name in READERS else "folder"


def read_split(data_cfg, dataset: str, split: str, name: str) -> Split:
    """The split of the dataset folder `dataset` read by the reader `name`."""
    return READERS.get(name)(data_cfg=data_cfg, dataset=dataset, split=split)


from vgjax.data.readers import folders, msls, nordland, npy_gt  # noqa: E402,F401  (registers)
