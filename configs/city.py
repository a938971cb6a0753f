"""Training on the synthetic city (demo preset), the recipe the suites' "city" variant and
`make demo` share: ResNet-18-conv4 at half width, trained from scratch (no downloadable
weights here), NetVLAD-16, 96x128, partial mining, Adam 1e-3; epochs of 500 queries, early
stopping with patience 3 on val R@5, at most 4 epochs.

    python -m vgjax.synthetic --out data/synthetic-demo --preset demo
    python -m vgjax.train --config configs/city.py --workdir runs/city
"""
from configs import default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = default.get_config()
    c.data.root = "data/synthetic-demo"
    c.data.train_dataset = "pitts30k"
    c.data.test_datasets = ["pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"]
    c.data.resize = (96, 128)
    c.data.num_workers = 4
    c.data.cache_decoded = "host"             # 3400 train + val images at 96x128: ~125 MB
    c.model.resnet_width = 32
    c.model.trainable_from = "conv1"
    c.model.netvlad_clusters = 16
    c.model.netvlad_init.images = 200
    c.model.netvlad_init.descriptors_per_image = 40
    c.model.netvlad_init.iterations = 30
    c.train.queries_per_step = 4
    c.train.negatives_per_query = 5
    c.train.cache_refresh_rate = 250
    c.train.queries_per_epoch = 500
    c.train.neg_samples_num = 500
    c.train.epochs = 4
    c.train.patience = 3
    c.train.lr = 1e-3
    c.train.infer_batch_size = 64
    c.test.batch_size = 64
    c.train.da.target_dir = "data/synthetic-demo/night-target/images"
    return default.smoke(c) if arg.smoke else c
