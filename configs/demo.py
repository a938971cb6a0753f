"""The `make demo` run: the demo synthetic city on a CPU in a few minutes.

    python -m vgjax.data.synthetic --out data/synthetic-demo --preset demo
    python -m vgjax.train --config configs/demo.py --workdir runs/demo

ResNet-18-conv4 (half width, trained from scratch: no downloadable weights here) + NetVLAD-16
at 96x128, partial mining, Adam; 4 epochs of 500 queries, validated each epoch, tested on the
four synthetic test sets.
"""
from configs import default


def get_config():
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
    c.evals.val.when = ["before", "epoch"]    # also validate the untrained model
    c.train.lr = 1e-3
    c.train.infer_batch_size = 64
    c.test.batch_size = 64
    return c
