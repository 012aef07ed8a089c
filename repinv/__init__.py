"""repinv: invert image representations with up-convolutional networks (Dosovitskiy & Brox, CVPR 2016)."""

from .errors import (CheckpointError, DataError, InvalidOption, NotDifferentiable, RepinvError, ShapeError,
                     UnknownName, UnknownRepresentation, UnknownVariant, WeightsUnavailable)
from .hookspecs import hookimpl, hookspec
from .plugins import get_registry, register_plugin, reset_plugins, unregister_plugin
from .representation import (FeatureSpec, Representation, check_images, check_shape, create_representation,
                             list_representations, rgb_to_gray)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CheckpointError", "DataError", "InvalidOption", "NotDifferentiable", "RepinvError", "ShapeError",
    "UnknownName", "UnknownRepresentation", "UnknownVariant", "WeightsUnavailable",
    "hookimpl", "hookspec",
    "get_registry", "register_plugin", "reset_plugins", "unregister_plugin",
    "FeatureSpec", "Representation", "check_images", "check_shape", "create_representation",
    "list_representations", "rgb_to_gray",
]
