"""Reference-protocol defaults: ResNet-18-conv4 + NetVLAD trained on Pitts30k.

Every experiment config imports this and overrides a few fields. Field meanings are in
README.md ("Configuration"). Values follow the PyTorch benchmark's defaults.
"""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data ----------------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.root = "data"                      # <root>/<name>/images/{train,val,test}/...
    c.data.train_dataset = "pitts30k"         # train + val splits come from this dataset
    c.data.test_datasets = ["pitts30k"]       # test split of each is evaluated at the end
    c.data.source = "folder"                  # folder | tfds (array_record copy, see README)
    c.data.tfds_dir = ""                      # where `tfds_builder` wrote the copies
    c.data.resize = (480, 640)                # (H, W) model input size
    c.data.num_workers = 8                    # decoding threads
    c.data.prefetch = 2                       # batches decoded ahead
    c.data.cache_decoded = False              # decode train + val images once (RUN/decoded/)
    c.data.soft_positives_dist = 25.0         # metres: ground truth, never a negative
    c.data.hard_positives_dist = 10.0         # metres: training positives

    # Model ---------------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.backbone = "resnet18conv4"        # resnet{18,50,101}conv{4,5}
    c.model.resnet_width = 64                 # channels of conv1 (64 = torchvision; smaller for tests)
    c.model.aggregation = "netvlad"           # netvlad | gem | mac | spoc
    c.model.netvlad_clusters = 64
    c.model.gem_p = 3.0
    c.model.gem_eps = 1e-6
    c.model.l2 = "before_pool"                # GeM/MAC/SPoC: before_pool | after_pool | none
    c.model.fc_output_dim = 0                 # >0: Linear to this size + L2 after aggregation
    c.model.trainable_from = "layer3"         # first trained stage; earlier ones are frozen
    c.model.freeze_frozen_bn_stats = False    # reference: frozen stages' BN stats still update
    c.model.dtype = "float32"                 # compute dtype: float32 | bfloat16
    c.model.pretrained = ""                   # vgjax model dir (see scripts/convert_torch_weights.py)
    c.model.netvlad_init = ml_collections.ConfigDict()
    c.model.netvlad_init.enabled = True       # k-means init of NetVLAD from training images
    c.model.netvlad_init.images = 500
    c.model.netvlad_init.descriptors_per_image = 100
    c.model.netvlad_init.iterations = 100

    # Training ------------------------------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    c.train.queries_per_step = 4              # "train_batch_size" of the reference
    c.train.negatives_per_query = 10
    c.train.mining = "partial"                # partial | full | random
    c.train.cache_refresh_rate = 1000         # queries per mining round
    c.train.neg_samples_num = 1000            # database images sampled per round (partial/full)
    c.train.queries_per_epoch = 5000
    c.train.epochs = 1000                     # upper bound; early stopping ends sooner
    c.train.patience = 3                      # epochs without val R@5 improvement
    c.train.loss = "triplet"                  # triplet | sare_ind | sare_joint
    c.train.margin = 0.1
    c.train.optimizer = "adam"                # adam | adamw | sgd | asgd
    c.train.lr = 1e-5
    c.train.weight_decay = 0.0                # adam/sgd/asgd: coupled (torch); adamw: decoupled
    c.train.momentum = 0.9                    # sgd
    c.train.asgd_lambd = 1e-4
    c.train.asgd_alpha = 0.75
    c.train.asgd_t0 = 1e6
    c.train.eval_with_averaged_weights = False  # asgd: validate/test with the averaged copy
    c.train.scheduler = "none"                # none | plateau | cosine
    c.train.plateau_factor = 0.1
    c.train.plateau_patience = 10
    c.train.plateau_threshold = 1e-4
    c.train.plateau_threshold_mode = "rel"
    c.train.plateau_cooldown = 0
    c.train.plateau_min_lr = 0.0
    c.train.cosine_t_max = 10                 # epochs
    c.train.cosine_eta_min = 0.0
    c.train.infer_batch_size = 32             # images per batch when computing caches
    c.train.validate_initial = False          # also validate the model before training
    c.train.num_devices = 0                   # data-parallel devices (0 = all)

    # Evaluation ----------------------------------------------------------------------------
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
    c.test.index = "flat"                     # flat (exact L2) | ivfpq
    c.test.ivfpq_nlist = 1024
    c.test.ivfpq_m = 64
    c.test.store_float16 = False              # descriptors streamed to disk as float16
    c.test.save_predictions = True
    c.test.num_pictures = 0                   # queries drawn beside their top-K
    c.test.pictures_only_wrong = False
    c.test.pictures_topk = 5                  # predictions drawn per query
    c.test.majority_weight = 0.01             # maj_voting: distance bonus per agreeing crop
    c.test.domains = ["day", "sunset", "night"]  # per-domain recalls from the file-name note
    c.test.pca_max_images = 16384             # images / descriptors PCA is fitted on
    c.test.ivfpq_nprobe = 16
    c.test.descriptors_dir = ""               # keep descriptors here (.npy); "" = temporary
    c.test.descriptors_in_memory_gb = 4.0     # larger descriptor sets stream to disk
    c.test.search_chunk_mb = 256.0            # database / query block size of exact search
    return c
