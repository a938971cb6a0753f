"""Evaluating an imported DINOv2-based VPR model (the published SALAD or BoQ-DINOv2 model,
or DINOv2's CLS token) as its authors evaluate it: every image resized to 322 x 322 (the
size the converted model dir stores; `--image-size 322 322` when converting), pixels
normalised with ImageNet's mean and std (the DINOv2 backbone's own normalisation), exact
search, R@1/5/10/20. Each evaluator option of `python -m vgjax.eval` applies on top (test
methods, multi-scale, PCA: docs/EVALUATION.md).

    python scripts/convert_torch_weights.py --input dino_salad.ckpt --output models/salad_b14 \\
        --image-size 322 322
    python -m vgjax.eval --checkpoint models/salad_b14 --config configs/dinov2_vpr.py \\
        --datasets data/pitts30k --out runs/salad-pitts30k
    python -m vgjax.eval --checkpoint models/salad_b14 --config configs/dinov2_vpr.py \\
        --config.data.format=msls --split val --datasets data/msls --out runs/salad-msls

Resizing: bilinear with antialiasing on float pixels (`data.eval_resize=float`,
`data.resize_antialias=true`). BoQ's published evaluation resizes bicubically, which vgjax
does not offer: its numbers may differ from the published ones by that resampling.
"""
from configs import default


def get_config(arg=None):
    c = default.get_config()
    c.model.backbone = "dinov2_vitb14"   # the converted model dir's own settings apply
    c.model.aggregation = "salad"
    c.model.netvlad_init.enabled = False
    c.data.resize = (322, 322)
    c.data.eval_resize = "float"
    c.data.resize_antialias = True
    c.test.method = "hard_resize"
    c.test.positive_dist = 25.0
    c.test.recall_values = [1, 5, 10, 20]
    return c
