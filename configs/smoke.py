"""A smoke run on the tiny synthetic city (about a minute on 2 CPU cores):

    python -m vgjax.data.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.train --config configs/smoke.py --workdir runs/smoke

Small images, a narrow ResNet-18-conv4 + NetVLAD-8, 2 epochs of 4 mining rounds each.
"""
from configs import default


def get_config():
    c = default.get_config()
    c.data.root = "data/synthetic-tiny"
    c.data.train_dataset = "pitts30k"
    c.data.test_datasets = ["pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"]
    c.data.resize = (48, 64)
    c.data.num_workers = 2
    c.model.resnet_width = 8
    c.model.netvlad_clusters = 8
    c.model.netvlad_init.images = 20
    c.model.netvlad_init.descriptors_per_image = 10
    c.model.netvlad_init.iterations = 20
    c.train.queries_per_step = 2
    c.train.negatives_per_query = 3
    c.train.cache_refresh_rate = 8
    c.train.queries_per_epoch = 32
    c.train.neg_samples_num = 24
    c.train.epochs = 2
    c.train.patience = 2
    c.train.lr = 1e-3
    c.train.infer_batch_size = 16
    c.test.batch_size = 16
    return c
