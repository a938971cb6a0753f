"""Reference baseline: ResNet-18-conv4 + GeM (p = 3, L2 before pooling), otherwise as
resnet18_netvlad (partial mining, triplet loss, Adam lr 1e-5, weight decay 1e-3)."""
from configs import resnet18_netvlad


def get_config(arg=None):
    c = resnet18_netvlad.get_config(arg)
    c.model.aggregation = "gem"
    c.model.netvlad_init.enabled = False
    return c
