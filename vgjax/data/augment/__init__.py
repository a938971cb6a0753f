"""Training-query augmentations (`train.query_augment`): the registry and spec checks
(`specs`), the ops with torchvision's formulas inside the train step (`device`, their image
arithmetic in `ops`; RandAugment in `randaugment`), and the reference's order on the
full-size query (`host`, `train.augment_on=host`). Importing the package registers every op."""
from vgjax.data.augment.device import (UINT8_TO_FLOAT, apply_colour_jitter, brightness,
                                       colour_jitter, colour_jitter_params,
                                       colour_jitter_ranges, hflip, make_query_augment,
                                       perspective, resized_crop, rotation)
from vgjax.data.augment.host import AUGMENT_ON, HostQueryAugment, host_query_augment
from vgjax.data.augment.ops import (CROP_ATTEMPTS, CROP_RATIO, GRAY_WEIGHTS, adjust_brightness,
                                    adjust_contrast, adjust_hue, adjust_saturation, blend,
                                    crop_resize, hsv_to_rgb, perspective_coeffs,
                                    perspective_params, resized_crop_params, rgb_to_grayscale,
                                    rgb_to_hsv, rotate, sample_bilinear, sample_nearest,
                                    warp_perspective)
from vgjax.data.augment.randaugment import randaugment
from vgjax.data.augment.specs import AUGMENTATIONS, check_specs

__all__ = ["AUGMENTATIONS", "AUGMENT_ON", "CROP_ATTEMPTS", "CROP_RATIO", "GRAY_WEIGHTS",
           "HostQueryAugment", "UINT8_TO_FLOAT", "adjust_brightness", "adjust_contrast",
           "adjust_hue", "adjust_saturation", "apply_colour_jitter", "blend", "brightness",
           "check_specs", "colour_jitter", "colour_jitter_params", "colour_jitter_ranges",
           "crop_resize", "hflip", "host_query_augment", "hsv_to_rgb", "make_query_augment",
           "perspective", "perspective_coeffs", "perspective_params", "randaugment",
           "resized_crop", "resized_crop_params", "rgb_to_grayscale", "rgb_to_hsv", "rotate",
           "rotation", "sample_bilinear", "sample_nearest", "warp_perspective"]
