"""What the table suites share: the base config and the test datasets.

Every suite runs the paper's setting by default: `configs/resnet18_netvlad.py`
(ResNet-18-conv4 + NetVLAD from ImageNet weights, Adam 1e-5, weight decay 1e-3, trained on
Pitts30k, tested on pitts30k, sf-xs, tokyo-xs and tokyo-night); pass the converted ImageNet
weights with --config.model.pretrained through the suite's `overrides` or an edited copy.
`get_suite("city")` switches to `configs/city.py`, the recipe for the synthetic city
(a narrow ResNet-18-conv4 from scratch at 96x128, shorter epochs), which is what the
committed results in docs/results/ ran.
"""
DATASETS = ["pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"]
PAPER = "configs/resnet18_netvlad.py"
CITY = "configs/city.py"


def base(arg: str | None) -> str:
    if arg in (None, "", "paper"):
        return PAPER
    if arg == "city":
        return CITY
    raise ValueError(f"suite argument {arg!r}: expected 'paper' (default) or 'city'")
