"""The registry: specs, argument checks, errors that name the option; and that every
component family is registered (adding one is one registered function)."""
import numpy as np
import pytest

from vgjax.config import ConfigError
from vgjax.data.ops import IMAGE_OPS
from vgjax.eval.evaluators import EVALUATORS
from vgjax.eval.methods import MULTISCALE, TEST_METHODS
from vgjax.eval.search import INDEXES
from vgjax.models.aggregation import AGGREGATIONS
from vgjax.registry import Registry, parse_spec
from vgjax.train.losses import LOSS_TERMS
from vgjax.train.mining import MINERS
from vgjax.train.optim import OPTIMIZERS
from vgjax.train.schedules import SCHEDULERS


def test_parse_spec():
    assert parse_spec("identity").name == "identity"
    s = parse_spec("brightness(0.1, p=0.5)")
    assert (s.name, s.args, dict(s.kwargs)) == ("brightness", (0.1,), {"p": 0.5})
    assert str(s) == "brightness(0.1, p=0.5)"
    for bad in ["", "a b", "f(x)", "f(**k)", "1+2", "f(a=[1, g()])"]:
        with pytest.raises(ConfigError, match="opt"):
            parse_spec(bad, "opt")


def test_registry_checks_before_calling():
    reg = Registry("demo.option", fixed=("x",))
    calls = []

    @reg.register("scale")
    def scale(x, factor=2.0, offset=0.0):
        calls.append(x)
        return x * factor + offset

    assert reg.names() == ["scale"] and "scale" in reg and list(reg) == ["scale"]
    assert reg.check("scale(3)").kwargs == {"factor": 3}  # positional -> keyword
    assert reg.partial("scale(factor=3)", {"offset": 1.0})(x=2) == 7.0
    assert reg.build("scale", {"factor": 0.5}, x=4) == 2.0
    with pytest.raises(ConfigError, match=r"demo\.option: unknown value 'scal'.*did you mean 'scale'"):
        reg.check("scal")
    with pytest.raises(ConfigError, match=r"demo\.option: scale has no argument 'factr' \(did you "
                                          r"mean 'factor'\?\); it takes: factor, offset"):
        reg.check("scale(factr=1)")
    with pytest.raises(ConfigError, match="set by vgjax itself"):
        reg.check("scale(x=1)")
    with pytest.raises(ConfigError, match="demo.option"):
        reg.check("scale(1, 2, 3)")
    assert calls == [2, 4]                       # checks never called the function
    with pytest.raises(ValueError, match="twice"):
        reg.register("scale")(scale)


@pytest.mark.parametrize("registry, names", [
    (TEST_METHODS, {"hard_resize", "single_query", "central_crop", "five_crops", "nearest_crop",
                    "maj_voting", "native"}),
    (MULTISCALE, {"avg", "sum", "max", "min"}),
    (IMAGE_OPS, {"resize", "resize_short_side", "central_crop", "five_crops", "scale",
                 "identity"}),
    (MINERS, {"partial", "full", "random"}),
    (LOSS_TERMS, {"triplet", "sare_ind", "sare_joint"}),
    (OPTIMIZERS, {"adam", "adamw", "sgd", "asgd"}),
    (SCHEDULERS, {"none", "plateau", "cosine"}),
    (AGGREGATIONS, {"netvlad", "gem", "mac", "spoc", "mixvpr", "convap", "cosplace", "boq",
                   "salad"}),
    (INDEXES, {"flat", "ivfpq"}),
    (EVALUATORS, {"retrieval"}),
])
def test_every_component_family_is_registered(registry, names):
    assert names <= set(registry.names())


def test_identity_op_is_one_registered_function():
    """Adding an image op = one registered function + this test."""
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    op = IMAGE_OPS.partial("identity")
    out = op(image=img)
    assert out is img
    with pytest.raises(ConfigError, match="image op: identity has no argument"):
        IMAGE_OPS.check("identity(strength=2)")


def test_import_layers():
    """config imports nothing else of vgjax; models nothing of data; no import cycles."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "vgjax"

    def imports(path):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: function-local imports are for heavy deps
            if isinstance(node, ast.ImportFrom) and node.module:
                yield node.module
            elif isinstance(node, ast.Import):
                yield from (a.name for a in node.names)

    for path in (root / "config").glob("*.py"):
        outside = [m for m in imports(path) if m.startswith("vgjax") and
                   not m.startswith("vgjax.config")]
        assert not outside, (path.name, outside)
    for path in (root / "models").glob("*.py"):
        assert not [m for m in imports(path) if m.startswith("vgjax.data")], path.name
    for path in (root / "data").glob("*.py"):
        bad = [m for m in imports(path) if m.split(".")[:2] in (["vgjax", "models"],
                                                               ["vgjax", "train"],
                                                               ["vgjax", "eval"])]
        assert not bad, (path.name, bad)
