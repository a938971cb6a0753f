"""Models: parity with a hand-written PyTorch reference, freezing, BN semantics, NetVLAD init."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from torch_reference import (ReferenceNet, TorchAlexNet, TorchResNet, TorchVGG16, randomize,
                             state_dict_numpy)

from configs.default import get_config
from vgjax.models import aggregation as agg
from vgjax.models.convert import convert_state_dict
from vgjax.models.netvlad_init import (
    initialize_netvlad,
    netvlad_params_from_descriptors,
    sample_local_descriptors,
)
from vgjax.models.network import (
    normalize,
    build_network,
    descriptor_dim,
    init_key,
    make_describe_fn,
    network_info,
    trainable_mask,
)

torch.set_num_threads(1)
SIZES = {"odd": (33, 47), "even": (32, 48)}


def model_cfg(**overrides):
    cfg = get_config().model
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def images(size, n=2, seed=0):
    """Random images: uint8 NHWC pixels (vgjax's networks normalise them) and the same
    ImageNet-normalised as NCHW torch."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    x = normalize(pixels).astype(np.float32)
    return pixels, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def assert_close(actual, expected, rel=1e-4):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=rel * scale)


def converted(ref: ReferenceNet, **flags):
    cfg, variables, _ = convert_state_dict(state_dict_numpy(ref), get_config().model, **flags)
    return cfg, variables


@pytest.fixture(scope="module")
def r18_netvlad():
    ref = randomize(ReferenceNet(TorchResNet(width=64), clusters=16), seed=1).eval()
    cfg, variables = converted(ref)
    assert cfg.backbone == "resnet18conv4" and cfg.netvlad_clusters == 16
    return ref, cfg, variables


@pytest.mark.parametrize("size", ["odd", "even"])
def test_resnet18_conv4_netvlad_matches_torch(r18_netvlad, size):
    ref, cfg, variables = r18_netvlad
    x, xt = images(SIZES[size])
    net = build_network(cfg)
    desc, feats = jax.jit(lambda v, x: net.apply(v, x, return_features=True))(variables, x)
    with torch.no_grad():
        feats_t = ref.backbone(xt)
        desc_t = ref.aggregation(feats_t)
    assert feats.shape == (2, *feats_t.shape[2:], 256) and desc.shape == (2, 16 * 256)
    assert desc.dtype == jnp.float32
    assert_close(feats, feats_t.numpy().transpose(0, 2, 3, 1))
    assert_close(desc, desc_t.numpy())


@pytest.mark.parametrize("size", ["odd", "even"])
def test_resnet18_conv4_gem_matches_torch(size):
    ref = randomize(ReferenceNet(TorchResNet(width=16), aggregation="gem"), seed=2).eval()
    cfg, variables = converted(ref)
    assert (cfg.aggregation, cfg.l2, cfg.resnet_width) == ("gem", "before_pool", 16)
    x, xt = images(SIZES[size], seed=3)
    desc = jax.jit(build_network(cfg).apply)(variables, x)
    with torch.no_grad():
        assert_close(desc, ref(xt).numpy())


def test_resnet50_conv5_bottleneck_gem_fc_matches_torch():
    resnet = TorchResNet(bottleneck=True, layers=(3, 4, 6, 3), width=8)
    ref = randomize(ReferenceNet(resnet, conv5=True, aggregation="gem", fc_output_dim=24),
                    seed=4).eval()
    cfg, variables = converted(ref)
    assert (cfg.backbone, cfg.fc_output_dim, descriptor_dim(cfg)) == ("resnet50conv5", 24, 24)
    x, xt = images((65, 63), seed=5)
    desc = jax.jit(build_network(cfg).apply)(variables, x)
    with torch.no_grad():
        assert_close(desc, ref(xt).numpy())


PLAIN_NETS = {"vgg16": TorchVGG16, "alexnet": TorchAlexNet}
# the reference trains VGG-16 from conv5_1 (features 24) and AlexNet from conv3 (features 6)
PLAIN_TRAINED = {"vgg16": {"features_24", "features_26", "features_28"},
                 "alexnet": {"features_6", "features_8", "features_10"}}


@pytest.mark.parametrize("name", ["vgg16", "alexnet"])
@pytest.mark.parametrize("aggregation, size", [("netvlad", (67, 75)), ("gem", (64, 80))])
def test_vgg16_and_alexnet_match_torch(name, aggregation, size):
    """The reference's cut (`features` without its last ReLU and max-pool), converted from
    the reference's state_dict: the same local features and descriptors as torch."""
    ref = randomize(ReferenceNet(PLAIN_NETS[name](width=16), aggregation=aggregation,
                                 clusters=4), seed=11).eval()
    cfg, variables = converted(ref)
    assert (cfg.backbone, cfg.resnet_width, cfg.aggregation) == (name, 16, aggregation)
    x, xt = images(size, seed=12)
    net = build_network(cfg)
    desc, feats = jax.jit(lambda v, x: net.apply(v, x, return_features=True))(variables, x)
    with torch.no_grad():
        feats_t = ref.backbone(xt)
        desc_t = ref.aggregation(feats_t)
    from vgjax.models.backbones import parse_backbone
    assert feats.shape[1:3] == feats_t.shape[2:] == parse_backbone(name).feature_size(*size)
    assert feats.shape[-1] == feats_t.shape[1] == (128 if name == "vgg16" else 64)
    assert_close(feats, feats_t.numpy().transpose(0, 2, 3, 1))
    assert_close(desc, desc_t.numpy())
    assert variables["batch_stats"] == {}  # no BatchNorm


@pytest.mark.parametrize("name", ["vgg16", "alexnet"])
def test_plain_backbones_freeze_as_the_reference(name):
    cfg = model_cfg(backbone=name, resnet_width=8, aggregation="gem")
    assert cfg.trainable_from == "auto"
    from vgjax.models.network import init_variables
    variables = init_variables(cfg, 0, (64, 64))
    net = build_network(cfg)
    x, _ = images((64, 64), n=2)

    def loss(params):
        desc = net.apply({"params": params, "batch_stats": {}}, x, train=True)
        return jnp.sum(desc[0] * desc[1])

    grads = jax.jit(jax.grad(loss))(variables["params"])
    mask = trainable_mask(variables["params"], cfg)
    for layer, sub in mask["backbone"].items():
        trainable = layer in PLAIN_TRAINED[name]
        assert all(m is trainable for m in jax.tree_util.tree_leaves(sub)), layer
        g = sum(float(jnp.abs(l).sum()) for l in jax.tree_util.tree_leaves(
            grads["backbone"][layer]))
        assert (g > 0) == trainable, layer
    # every stage can be named; the whole backbone too
    everything = trainable_mask(variables["params"], model_cfg(
        backbone=name, resnet_width=8, aggregation="gem", trainable_from="conv1"))
    assert all(jax.tree_util.tree_leaves(everything["backbone"]))
    head_only = trainable_mask(variables["params"], model_cfg(
        backbone=name, resnet_width=8, aggregation="gem", trainable_from="aggregation"))
    assert not any(jax.tree_util.tree_leaves(head_only["backbone"]))
    if name == "vgg16":  # torchvision's conv5 block (3 x 3x3x512x512 + biases) and NetVLAD-64
        info = network_info(model_cfg(backbone=name), (64, 64))
        assert (info["trainable_params"], info["frozen_params"]) == (7_144_960, 7_635_264)
        assert info["descriptor_dim"] == 64 * 512
    with pytest.raises(ValueError, match=rf"'layer3' is not a stage of {name} \(accepted: "
                                         r"auto, conv1, conv2, conv3, conv4, conv5"):
        build_network(model_cfg(backbone=name, trainable_from="layer3"))


@pytest.mark.parametrize("aggregation, size", [("rmac", (64, 96)), ("rmac", (97, 63)),
                                               ("rrm", (48, 64))])
def test_rmac_and_rrm_heads_match_torch(aggregation, size):
    """R-MAC (regions of the reference's `rmac`, after the default L2 over channels) and
    RRM, converted from the reference's state_dict."""
    ref = randomize(ReferenceNet(TorchResNet(width=8), aggregation=aggregation), seed=13)
    if aggregation == "rrm":  # non-trivial LayerNorm affine parameters
        with torch.no_grad():
            for ln in (ref.aggregation.ln1, ref.aggregation.ln2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.2, 0.2)
    ref = ref.eval()
    flags = {"aggregation": "rmac"} if aggregation == "rmac" else {}  # no parameters to tell
    cfg, variables = converted(ref, **flags)
    assert cfg.aggregation == aggregation and descriptor_dim(cfg) == 32
    x, xt = images(size, seed=14)
    desc = jax.jit(build_network(cfg).apply)(variables, x)
    with torch.no_grad():
        assert_close(desc, ref(xt).numpy())


def test_crn_matches_torch_and_refuses_odd_feature_maps():
    """CRN (NetVLAD reweighted by the context mask), converted from the reference's
    state_dict; its x2-upsampled mask only fits even feature maps."""
    ref = randomize(ReferenceNet(TorchResNet(width=8), aggregation="crn", clusters=4),
                    seed=15).eval()
    cfg, variables = converted(ref)
    assert (cfg.aggregation, cfg.netvlad_clusters, descriptor_dim(cfg)) == ("crn", 4, 4 * 32)
    net = build_network(cfg)
    for size in ((64, 96), (96, 128)):  # 4 x 6 and 6 x 8 local features
        x, xt = images(size, seed=16)
        with torch.no_grad():
            assert_close(jax.jit(net.apply)(variables, x), ref(xt).numpy())
    mask = trainable_mask(variables["params"], cfg)["aggregation"]
    assert not any(jax.tree_util.tree_leaves(mask["crn"]["acc_w"]))
    assert all(jax.tree_util.tree_leaves(mask["crn"]["filter_7_7"])) and mask["centroids"]
    x, _ = images((48, 64))  # 3 x 4
    with pytest.raises(ValueError, match=r"model.aggregation=crn: the local features are 3x4"):
        net.apply(variables, x)


def test_crn_upsampling_is_torch_bilinear():
    from vgjax.models.crn import upsample2
    x = np.random.default_rng(0).random((2, 3, 5, 2), np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                               scale_factor=2, mode="bilinear")
    assert_close(upsample2(x), expected.numpy().transpose(0, 2, 3, 1), rel=1e-6)


def test_rmac_regions_are_the_reference_regions():
    from vgjax.models.aggregation import rmac_regions
    # a 30 x 40 map (480 x 640 at stride 16): rows x columns of squares per level 1 x 2,
    # 2 x 3, 3 x 4, as the reference's rmac places them (checked against its own function)
    regions = rmac_regions(30, 40)
    assert len(regions) == 2 + 6 + 12
    assert regions[:2] == [(0, 0, 30), (0, 10, 30)]
    assert regions[2:8] == [(0, 0, 20), (0, 10, 20), (0, 20, 20), (10, 0, 20), (10, 10, 20),
                            (10, 20, 20)]
    assert all(t + s <= 30 and l + s <= 40 for t, l, s in regions)
    assert len(rmac_regions(16, 16)) == 1 + 4 + 9


def test_train_mode_batchnorm_matches_torch():
    ref = randomize(ReferenceNet(TorchResNet(width=8), clusters=4), seed=6)
    cfg, variables = converted(ref)
    x, xt = images((33, 47), n=3, seed=7)
    net = build_network(cfg)
    desc, state = jax.jit(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x)
    ref.train()
    with torch.no_grad():
        desc_t = ref(xt)
    assert_close(desc, desc_t.numpy(), rel=1e-3)
    _, after, _ = convert_state_dict(state_dict_numpy(ref), get_config().model)
    flat_new = jax.tree_util.tree_leaves_with_path(state["batch_stats"])
    flat_ref = dict(jax.tree_util.tree_leaves_with_path(after["batch_stats"]))
    assert len(flat_new) == 2 * 15  # 15 BatchNorms in ResNet-18 up to layer3
    for path, value in flat_new:
        assert_close(value, flat_ref[path], rel=1e-4)


def test_frozen_stages_get_no_gradient_and_keep_bn_stats():
    ref = randomize(ReferenceNet(TorchResNet(width=4), aggregation="gem"), seed=9)
    cfg, variables = converted(ref)
    cfg.freeze_frozen_bn_stats = True
    net = build_network(cfg)
    x, _ = images((32, 32), n=2)

    def loss(params):
        desc, state = net.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                train=True, mutable=["batch_stats"])
        return jnp.sum(desc[0] * desc[1]), state

    grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    mask = trainable_mask(variables["params"], cfg)
    assert set(mask["backbone"]) == {"conv1", "bn1", "layer1", "layer2", "layer3"}
    for stage, trainable in [("conv1", False), ("bn1", False), ("layer1", False),
                             ("layer2", False), ("layer3", True)]:
        assert all(m is trainable for m in jax.tree_util.tree_leaves(mask["backbone"][stage]))
        g = sum(float(jnp.abs(l).sum()) for l in jax.tree_util.tree_leaves(
            grads["backbone"][stage]))
        assert (g > 0) == trainable, stage
        if stage == "conv1":
            continue  # no batch statistics
        old = jax.tree_util.tree_leaves(variables["batch_stats"]["backbone"][stage])
        new = jax.tree_util.tree_leaves(state["batch_stats"]["backbone"][stage])
        changed = any(not np.array_equal(a, b) for a, b in zip(old, new))
        assert changed == trainable, stage
    assert all(jax.tree_util.tree_leaves(mask["aggregation"]))


def test_bfloat16_close_to_float32(r18_netvlad):
    _, cfg, variables = r18_netvlad
    x, _ = images((33, 47), seed=8)
    bf_cfg = ml_collections.ConfigDict(cfg.to_dict())
    bf_cfg.dtype = "bfloat16"
    d16 = jax.jit(build_network(bf_cfg).apply)(variables, x)
    d32 = jax.jit(build_network(cfg).apply)(variables, x)
    assert d16.dtype == jnp.float32
    err = np.linalg.norm(np.asarray(d16) - np.asarray(d32), axis=1) / np.linalg.norm(d32, axis=1)
    assert err.max() < 1e-2


def test_aggregations_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
    for kind, pool in [("mac", lambda a: a.max((1, 2))), ("spoc", lambda a: a.mean((1, 2))),
                       ("gem", lambda a: (np.maximum(a, 1e-6) ** 3).mean((1, 2)) ** (1 / 3))]:
        for l2 in ("before_pool", "after_pool", "none"):
            module = agg.GlobalPool(kind, l2)
            out = module.apply(module.init(init_key(0), x), x)
            expected = pool(unit if l2 == "before_pool" else x)
            if l2 == "after_pool":
                expected = expected / np.linalg.norm(expected, axis=-1, keepdims=True)
            assert_close(out, expected, rel=1e-5)


def test_netvlad_fc_and_validation():
    cfg = model_cfg(netvlad_clusters=4, fc_output_dim=7, resnet_width=4)
    assert descriptor_dim(cfg) == 7
    net = build_network(cfg)
    feats = jnp.ones((2, 2, 3, 16))
    v = net.init(init_key(0), feats, method=type(net).aggregate)
    assert v["params"]["fc"]["kernel"].shape == (4 * 16, 7)
    out = net.apply(v, feats, method=type(net).aggregate)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    for field, value in [("backbone", "resnet34conv4"), ("aggregation", "vlad"),
                         ("l2", "sometimes"), ("dtype", "float16"), ("trainable_from", "layer9")]:
        with pytest.raises(ValueError, match=f"model.{field}"):
            build_network(model_cfg(**{field: value, "aggregation": "gem"}
                                    if field != "aggregation" else {field: value}))
    with pytest.raises(ValueError, match="model.trainable_from.*layer4"):
        build_network(model_cfg(trainable_from="layer4"))


def test_network_info_counts_and_flops():
    info = network_info(model_cfg(), (480, 640))
    assert info["descriptor_dim"] == 16384
    # conv1 + bn1 + layer1 + layer2 of ResNet-18 are frozen.
    assert info["frozen_params"] == 9408 + 128 + 147968 + 525568
    assert info["trainable_params"] == 2099712 + 64 * 256 * 2
    assert 16.5 < info["gflops_per_image"] < 17.5  # PERF.md: 17.3 incl. padded taps


def test_netvlad_alpha_and_kernel_follow_the_reference_formula():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    x = centres[rng.integers(0, 8, 2000)] + 0.3 * rng.normal(size=(2000, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centroids, kernel, alpha = netvlad_params_from_descriptors(x, 8, iterations=20, seed=1)
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    dots = np.sort(unit @ x.T, axis=0)[::-1]  # the reference's computation, (K, M)
    expected_alpha = -np.log(0.01) / np.mean(dots[0] - dots[1])
    assert alpha == pytest.approx(expected_alpha, rel=1e-5)
    assert kernel.shape == (1, 1, 16, 8)
    np.testing.assert_allclose(kernel[0, 0].T, expected_alpha * unit, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 8 descriptors"):
        netvlad_params_from_descriptors(x[:5], 8)


def alpha_of(kernel):
    """alpha = the norm of every kernel column (kernel = alpha * unit centroids)."""
    norms = np.linalg.norm(np.asarray(kernel[0, 0]), axis=0)
    np.testing.assert_allclose(norms, norms[0], rtol=1e-4)
    return norms[0]


def test_initialize_netvlad_from_backbone_features():
    ref = randomize(ReferenceNet(TorchResNet(width=8), clusters=4), seed=10)
    cfg, variables = converted(ref)
    cfg.netvlad_init.descriptors_per_image = 3
    cfg.netvlad_init.iterations = 5
    net = build_network(cfg)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8), 4),
               (rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8), 2)]
    new = initialize_netvlad(net, variables, batches, cfg, seed=0)
    c = new["params"]["aggregation"]["centroids"]
    k = new["params"]["aggregation"]["conv"]["kernel"]
    assert c.shape == (4, 32) and k.shape == (1, 1, 32, 4)
    np.testing.assert_allclose(np.asarray(k[0, 0].T), alpha_of(k) * np.asarray(
        c / jnp.linalg.norm(c, axis=1, keepdims=True)), rtol=1e-4, atol=1e-5)
    assert new["params"]["backbone"] is variables["params"]["backbone"]
    desc = make_describe_fn(net)(new, batches[0][0])
    assert desc.shape == (4, 128) and np.isfinite(np.asarray(desc)).all()
    feats = rng.normal(size=(2, 2, 3, 5)).astype(np.float32)
    sample = sample_local_descriptors(feats, 6, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(sample, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="descriptors_per_image"):
        sample_local_descriptors(feats, 7, np.random.default_rng(0))


def test_crn_starts_from_a_trained_netvlad(tmp_path):
    """model.pretrained holding a NetVLAD gives CRN its centroids and soft assignment (a
    trained head: no k-means), as the reference trains CRN from a NetVLAD checkpoint."""
    from vgjax.models.io import save_model
    from vgjax.models.network import init_variables
    from vgjax.config import ConfigError
    from vgjax.models.pretrained_dir import check_pretrained_dir
    from vgjax.train.init import pretrained_variables
    nv_cfg = model_cfg(resnet_width=8, netvlad_clusters=4)
    netvlad = init_variables(nv_cfg, 1, (64, 64))
    save_model(tmp_path / "nv", nv_cfg, netvlad, image_size=(64, 64))
    crn_cfg = model_cfg(resnet_width=8, netvlad_clusters=4, aggregation="crn",
                        pretrained=str(tmp_path / "nv"))
    variables, has_head = pretrained_variables(crn_cfg, init_variables(crn_cfg, 2, (64, 64)))
    assert has_head
    agg = variables["params"]["aggregation"]
    np.testing.assert_array_equal(agg["centroids"], netvlad["params"]["aggregation"]["centroids"])
    assert "crn" in agg
    # another head, or the same with other shapes: refused naming both, unless partial
    gem_cfg = model_cfg(resnet_width=8, aggregation="gem", pretrained=str(tmp_path / "nv"))
    with pytest.raises(ConfigError, match="a netvlad head there, gem here.*pretrained_partial"):
        pretrained_variables(gem_cfg, init_variables(gem_cfg, 2, (64, 64)))
    other_k = model_cfg(resnet_width=8, netvlad_clusters=6, pretrained=str(tmp_path / "nv"))
    with pytest.raises(ConfigError, match=r"aggregation/centroids \(4, 32\) there, \(6, 32\) here"):
        check_pretrained_dir(other_k)
    fc = model_cfg(resnet_width=8, netvlad_clusters=4, fc_output_dim=16,
                   pretrained=str(tmp_path / "nv"))
    with pytest.raises(ConfigError, match=r"fc/kernel absent there, \(128, 16\) here"):
        check_pretrained_dir(fc)
    check_pretrained_dir(crn_cfg)  # CRN on a NetVLAD fits
    partial = model_cfg(resnet_width=8, aggregation="gem", pretrained=str(tmp_path / "nv"),
                        pretrained_partial=True)
    variables, has_head = pretrained_variables(partial, init_variables(partial, 2, (64, 64)))
    assert not has_head
    np.testing.assert_array_equal(variables["params"]["backbone"]["conv1"]["kernel"],
                                  netvlad["params"]["backbone"]["conv1"]["kernel"])
