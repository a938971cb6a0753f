"""What the table suites share: the base config and the test datasets.

Every suite runs the paper's setting by default: `configs/resnet18_netvlad.py`
(ResNet-18-conv4 + NetVLAD from ImageNet weights, Adam 1e-5, weight decay 1e-3, trained on
Pitts30k, tested on pitts30k, sf-xs, tokyo-xs and tokyo-night); pass the converted ImageNet
weights with --config.model.pretrained through the suite's `overrides` or an edited copy.
`get_suite("city")` switches to `configs/city.py`, the earlier recipe for the synthetic city
(a narrow ResNet-18-conv4 from scratch at 96x128, shorter epochs); `get_suite("demo")` to
`configs/demo.py`, `make demo`'s recipe (ImageNet-pretrained EfficientNet-Lite0 + NetVLAD-16
fine-tuned at 96x128).
"""
DATASETS = ["pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"]
PAPER = "configs/resnet18_netvlad.py"
CITY = "configs/city.py"
DEMO = "configs/demo.py"
# variant: (base config, the backbone it trains, as table titles name it)
VARIANTS = {"paper": (PAPER, "ResNet-18-conv4"),
            "city": (CITY, "ResNet-18-conv4, narrow, from scratch"),
            "demo": (DEMO, "EfficientNet-Lite0, ImageNet-pretrained")}


def _variant(arg: str | None) -> tuple[str, str]:
    """(base config, backbone) of a suite argument; 'paper' when it is empty."""
    name = arg or "paper"
    if name not in VARIANTS:
        raise ValueError(f"suite argument {arg!r}: expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def base(arg: str | None) -> str:
    """The base config of a suite variant: 'paper' (default), 'city' (from scratch on the
    synthetic city) or 'demo' (`make demo`'s recipe: ImageNet-pretrained EfficientNet-Lite0
    fine-tuned on the synthetic city)."""
    return _variant(arg)[0]


def backbone(arg: str | None) -> str:
    """The backbone a suite variant trains, for its title."""
    return _variant(arg)[1]


def overrides(arg: str | None, before_training: bool = False) -> dict:
    """Overrides every cell of a variant shares: the 'demo' recipe tests its pretrained
    network before training (`evals.before_training`) only where a table shows it."""
    if arg == "demo" and not before_training:
        return {"evals.before_training.when": []}
    return {}
