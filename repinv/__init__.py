"""repinv: invert image representations with up-convolutional networks (Dosovitskiy & Brox, CVPR 2016).

The flat public API: create a representation by name, train a decoder for it, load a run, reconstruct, evaluate.

    >>> import repinv
    >>> config = repinv.make_config("hog-64", data=["builtin"], steps=100)
    >>> result = repinv.train(config, "runs/hog")
    >>> inverter = repinv.load("runs/hog")
    >>> reconstructions = inverter.reconstruct(images)
"""

__version__ = "0.1.0"  # first: modules imported below record it in checkpoints

from .baselines import LinearInverter, fit_linear, load_linear
from .compare import compare
from .config import TrainConfig, list_recipes, load_recipe, make_config
from .data import DataWarning, ImageDataset, load_image, load_images
from .decoders import build_decoder, decoder_from_config
from .errors import (CacheError, CheckpointError, DataError, InvalidOption, NotDifferentiable, RepinvError, ShapeError,
                     UnknownName, UnknownRepresentation, UnknownVariant, WeightsUnavailable)
from .evaluate import evaluate
from .features import FeatureCache, cache_features
from .hookspecs import hookimpl, hookspec
from .inverter import Inverter, load
from .metrics import psnr, ssim
from .optimize import OptimizationInverter, OptimizeSettings, optimize_images
from .perturbations import apply_perturbation
from .plugins import get_registry, register_plugin, reset_plugins, unregister_plugin
from .report import report
from .representation import (FeatureSpec, Representation, check_images, check_shape, create_representation,
                             list_representations, rgb_to_gray, with_defaults)
from .sampling import fit_distribution, sample_images
from .studies import analyze, interpolate, write_interpolation_strip
from .train import TrainResult, TrainingInterrupted, resume, train

__all__ = [
    "__version__",
    # representations and plugins
    "FeatureSpec", "Representation", "create_representation", "list_representations", "check_images",
    "check_shape", "rgb_to_gray", "with_defaults", "hookimpl", "hookspec", "get_registry", "register_plugin",
    "unregister_plugin", "reset_plugins",
    # decoders, data, training
    "build_decoder", "decoder_from_config", "ImageDataset", "load_image", "load_images", "DataWarning",
    "TrainConfig", "make_config", "load_recipe", "list_recipes", "train", "resume", "TrainResult",
    "TrainingInterrupted", "cache_features", "FeatureCache",
    # using a trained decoder
    "Inverter", "load", "evaluate", "psnr", "ssim",
    # baselines and reports
    "OptimizeSettings", "OptimizationInverter", "optimize_images", "LinearInverter", "fit_linear", "load_linear",
    "compare", "report",
    # studies
    "analyze", "apply_perturbation", "interpolate", "write_interpolation_strip", "sample_images", "fit_distribution",
    # errors
    "RepinvError", "CacheError", "CheckpointError", "DataError", "InvalidOption", "NotDifferentiable", "ShapeError",
    "UnknownName", "UnknownRepresentation", "UnknownVariant", "WeightsUnavailable",
]
