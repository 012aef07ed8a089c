"""repinv: invert image representations with up-convolutional networks (Dosovitskiy & Brox, CVPR 2016).

The flat public API: create a representation by name, train a decoder for it, load a run, reconstruct, evaluate.

    >>> import repinv
    >>> config = repinv.make_config("hog-64", data=["builtin"], steps=100)
    >>> result = repinv.train(config, "runs/hog")
    >>> inverter = repinv.load_decoder("runs/hog")
    >>> reconstructions = inverter.reconstruct(images)
"""

from repinv.analysis.compare import compare
from repinv.analysis.evaluate import evaluate
from repinv.analysis.metrics import psnr, ssim
from repinv.analysis.perturbations import apply_perturbation
from repinv.analysis.random_features import fit_distribution, sample_images
from repinv.analysis.report import report
from repinv.analysis.studies import analyze, interpolate, write_interpolation_strip
from repinv.data.cache import FeatureCache, cache_features
from repinv.data.sources import DataWarning, ImageDataset, load_image, load_images
from repinv.errors import (
                           CacheError,
                           CheckpointError,
                           DataError,
                           InvalidOption,
                           NotDifferentiable,
                           RepinvError,
                           ShapeError,
                           TrainingFailed,
                           UnknownName,
                           UnknownRepresentation,
                           UnknownVariant,
                           WeightsUnavailable,
)
from repinv.inversion.base import InversionMethod
from repinv.inversion.decoder import DecoderInverter, Inverter, load, load_decoder
from repinv.inversion.linear import LinearInverter, fit_linear, load_linear
from repinv.inversion.loading import load_inverter
from repinv.inversion.mean import MeanImageInverter, load_mean_image
from repinv.inversion.optimization import OptimizationInverter, OptimizeSettings, optimize_images
from repinv.losses import Comparator, LossTerm, TrainingLoss, format_loss, list_losses, parse_loss
from repinv.options import (
                           Option,
                           dataclass_options,
                           option_defaults,
                           option_error,
                           parse_value,
                           validate_options,
                           with_defaults,
)
from repinv.registry.factories import build_decoder, create_representation, decoder_from_config, list_representations
from repinv.registry.hookspecs import hookimpl, hookspec
from repinv.registry.manager import get_registry, register_plugin, reset_plugins, unregister_plugin
from repinv.representations.base import FeatureSpec, Representation, rgb_to_gray
from repinv.rundir import RunDir
from repinv.training.config import TrainConfig, list_recipes, load_recipe, make_config
from repinv.training.loop import TrainingInterrupted, TrainResult, resume, train
from repinv.utils import VERSION as __version__
from repinv.utils import check_images, check_shape

__all__ = [
    "__version__",
    # representations and plugins
    "FeatureSpec", "Representation", "create_representation", "list_representations", "check_images",
    "check_shape", "rgb_to_gray", "with_defaults", "hookimpl", "hookspec", "get_registry", "register_plugin",
    "unregister_plugin", "reset_plugins",
    # options (the one validation, for the core and for plugins)
    "Option", "validate_options", "option_error", "option_defaults", "dataclass_options", "parse_value",
    # decoders, data, training
    "build_decoder", "decoder_from_config", "ImageDataset", "load_image", "load_images", "DataWarning",
    "TrainConfig", "make_config", "load_recipe", "list_recipes", "train", "resume", "TrainResult",
    "TrainingInterrupted", "TrainingFailed", "cache_features", "FeatureCache", "RunDir",
    # losses
    "LossTerm", "TrainingLoss", "Comparator", "parse_loss", "format_loss", "list_losses",
    # inversion methods (Inverter and load: the decoder's, under their earlier names)
    "InversionMethod", "DecoderInverter", "Inverter", "load_decoder", "load", "load_inverter", "MeanImageInverter",
    "load_mean_image", "evaluate", "psnr", "ssim",
    # baselines and reports
    "OptimizeSettings", "OptimizationInverter", "optimize_images", "LinearInverter", "fit_linear", "load_linear",
    "compare", "report",
    # studies
    "analyze", "apply_perturbation", "interpolate", "write_interpolation_strip", "sample_images", "fit_distribution",
    # errors
    "RepinvError", "CacheError", "CheckpointError", "DataError", "InvalidOption", "NotDifferentiable", "ShapeError",
    "UnknownName", "UnknownRepresentation", "UnknownVariant", "WeightsUnavailable",
]
