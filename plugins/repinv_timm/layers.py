"""Any layer of any timm model as a representation: ``timm:<model>:<layer>``.

``<model>`` is a timm model name, optionally with a pretrained tag (``resnet18``, ``vit_tiny_patch16_224``,
``convnext_atto.d2_in1k``). ``<layer>`` is a module name from the model's ``named_modules()`` (``layer3``,
``blocks.5``, ``stages.2.blocks.0``), or one of two names for the head:

* ``pooled``: the pre-logits features, ``model.forward_head(model.forward_features(x), pre_logits=True)``;
* ``logits``: the model's final output.

A module's output is taken with a temporary forward hook that ends the forward pass there (the model is never
modified, and nothing after the layer is computed), then brought to repinv's two shapes:

* ``(B, C, h, w)`` stays; a channels-last ``(B, h, w, C)`` map (Swin stages, the inside of ConvNeXt blocks) becomes
  channels-first. The layout is read off the shape: the two spatial sides follow the input's aspect ratio, the
  channel count does not (option ``layout`` overrides this for the rare shape where both readings fit);
* ``(B, N, C)`` tokens (ViT, DeiT) become a ``(B, C, h, w)`` grid: the model's prefix tokens
  (``model.num_prefix_tokens``: class and register tokens) are dropped and the rest laid out on the patch grid;
* ``(B, D)`` stays a vector;
* anything else (tuples, lists, dicts, windows or heads folded into the batch dimension, tokens that form no grid)
  is refused with an error that says what the module gave.

The model is created with ``pretrained=False``; images are resized to the input size of its pretrained config
(``timm.data.resolve_data_config``: e.g. 224x224, with its interpolation, antialiased) and normalized with its mean
and standard deviation inside the representation, so the feature shape does not depend on the image size.

Weights (option ``weights``): ``pretrained`` (default) is timm's own pretrained weights for the model (Hugging Face
Hub and timm's cache; when the Hub cannot be reached within 3 s, only the cache is tried, so an offline machine
gets its answer at once instead of after the Hub client's retries); ``none`` is timm's random initialization,
seeded by option ``seed``; a path loads a local state dict in timm's key format (``.safetensors``, or ``.pth`` read
with ``torch.load(weights_only=True)``). Weights are loaded on the first :meth:`~TimmLayer.forward` or
:meth:`~TimmLayer.state_dict` (or :meth:`~TimmLayer.load_weights`), never when the representation is only created,
so listing layers and shapes works offline; ``load_state_dict`` (a run's ``encoder.safetensors``) supplies the
weights itself.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import timm
import torch
import torch.nn.functional as F
from timm.data.config import resolve_data_config
from torch import Tensor, nn

from repinv.errors import InvalidOption, ShapeError, UnknownVariant, WeightsUnavailable
from repinv.options import Option, option_defaults, option_error, validate_options
from repinv.representations.base import FeatureSpec, Representation, rgb_to_gray
from repinv.representations.networks import (
    DeferredWeights,
    capture,
    capture_many,
    describe_error,
    parse_weights,
    read_state_dict,
    record_outputs,
    same_network,
)
from repinv.utils import check_images

__all__ = ["TimmLayer", "OPTIONS", "DEFAULTS", "HEAD_LAYERS", "EXAMPLE_MODEL", "UnknownModel", "create_timm",
           "timm_variants", "featured_layers", "to_features", "hub_reachable"]

#: How a 4-D output is read: from its shape, or as given.
LAYOUTS = ("auto", "NCHW", "NHWC")
#: The options of ``timm``; :meth:`TimmLayer.config` returns all of them. ``weights`` is checked by
#: ``parse_weights`` (which also makes a path absolute), ``tag`` against the model's pretrained tags.
OPTIONS = (
    Option("weights", "pretrained", object, "pretrained (timm's), none (random, seeded) or a weights file"),
    Option("seed", 0, int, "seeds the random initialization"),
    Option("layout", "auto", LAYOUTS, "how a 4-D output is read"),
    Option("tag", None, str, "the pretrained tag (null: timm's default, recorded)", optional=True),
    Option("input_size", None, int, "side images are resized to before the network (null: the model's pretrained "
                                    "input size; e.g. 64 keeps a 64x64 image as it is)", minimum=8, optional=True),
)
#: Options and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(OPTIONS)
#: Layer names for the head, besides module names.
HEAD_LAYERS = ("pooled", "logits")
#: The model whose layers the registry lists when asked without a model name.
EXAMPLE_MODEL = "resnet18"


class UnknownModel(UnknownVariant):
    """A ``timm:`` name without a model, or with a model timm does not know (the message lists the nearest)."""

    def _message(self) -> str:
        family = self.family or "timm"
        if self.variant is None:
            return (f"{family} needs a model and a layer, e.g. {family}:{EXAMPLE_MODEL}:layer3; a model's layers are "
                    f"listed when it is named without one ({family}:{EXAMPLE_MODEL})")
        shown = ", ".join(self.available[:12]) + (f", … ({len(self.available) - 12} more)"
                                                  if len(self.available) > 12 else "")
        return f"unknown {family} model {self.variant!r}; available: {shown or '(none)'}"


def _fits(height: int, width: int, input_size: tuple[int, int]) -> bool:
    """Whether a ``height x width`` map has the input's aspect ratio, to within one cell of rounding."""
    return abs(height * input_size[1] - width * input_size[0]) < max(input_size)


def to_features(output: object, *, batch: int, input_size: tuple[int, int], num_prefix_tokens: int = 0,
                grid: Sequence[int] | None = None, layout: str = "auto", default_layout: str = "NCHW",
                what: str = "the layer") -> Tensor:
    """Bring a module's output to a feature map ``(B, C, h, w)`` or a feature vector ``(B, D)``.

    Args:
        output: what the module returned.
        batch: the number of images ``B``.
        input_size: ``(H, W)`` the model saw, to tell spatial sides from channels.
        num_prefix_tokens: tokens before the patch tokens of a ``(B, N, C)`` sequence (class, register tokens).
        grid: ``(h, w)`` patch grid of the model, when known.
        layout: ``"auto"``, or ``"NCHW"`` / ``"NHWC"`` to fix how a 4-D output is read.
        default_layout: the reading where both fit in ``"auto"`` (the model's ``output_fmt``).
        what: how to name the layer in errors.

    Returns:
        The features, channels first.

    Raises:
        ShapeError: the output is not one tensor, folds something into the batch dimension, has 1 or more than 4
            dimensions, or its tokens form no grid.

    Shape:
        ``(B, C, h, w)`` or ``(B, h, w, C)`` → ``(B, C, h, w)``; ``(B, N, C)`` → ``(B, C, h, w)`` with
        ``h * w = N - num_prefix_tokens``; ``(B, D)`` → ``(B, D)``.
    """
    if not isinstance(output, Tensor):
        count = f" of {len(output)} values" if isinstance(output, (tuple, list, dict)) else ""
        raise ShapeError(f"{what} outputs a {type(output).__name__}{count}, not one tensor; choose a layer that "
                         f"outputs a tensor (e.g. its parent or one of its children)")
    shape = tuple(output.shape)
    if output.dim() < 2 or output.dim() > 4 or shape[0] != batch:
        detail = f"its first dimension is {shape[0]} for {batch} images (windows or heads folded into the batch?)" \
            if output.dim() >= 1 and shape[0] != batch else f"{output.dim()} dimensions"
        raise ShapeError(f"{what} outputs {shape}: {detail}; repinv takes feature maps (B, C, h, w), token "
                         f"sequences (B, N, C) or vectors (B, D)")
    # Contiguous: features are saved (feature caches, safetensors) and views of timm's internals may not be.
    if output.dim() == 2:
        return output.contiguous()
    if output.dim() == 4:
        if layout == "auto":
            first, last = _fits(shape[2], shape[3], input_size), _fits(shape[1], shape[2], input_size)
            layout = "NHWC" if last and not first else "NCHW" if first and not last else default_layout
        return (output.permute(0, 3, 1, 2) if layout == "NHWC" else output).contiguous()
    tokens, channels = shape[1], shape[2]
    height = width = 0
    for prefix in dict.fromkeys((num_prefix_tokens, 0)):  # prefix tokens dropped, or a sequence without them
        cells = tokens - prefix
        if grid is not None and cells == int(grid[0]) * int(grid[1]):
            height, width = int(grid[0]), int(grid[1])
        elif cells > 0 and math.isqrt(cells) ** 2 == cells:
            height = width = math.isqrt(cells)
        if height:
            break
    if not height:
        raise ShapeError(f"{what} outputs {shape}: {tokens} tokens minus {num_prefix_tokens} prefix tokens form "
                         f"no grid; choose another layer")
    patches = output[:, tokens - height * width:]
    return patches.transpose(1, 2).reshape(batch, channels, height, width).contiguous()


@runtime_checkable
class _PreLogits(Protocol):
    """A timm model with the pre-logits head (``forward_features`` and ``forward_head``, as timm's models have)."""

    def forward_features(self, x: Tensor) -> Any: ...

    def forward_head(self, x: Any, pre_logits: bool = False) -> Any: ...


def featured_layers(model: nn.Module) -> list[str]:
    """A model's main layers: its ``feature_info`` stages (timm's own choice), else its top-level children."""
    modules = {name for name, _ in model.named_modules() if name}
    info = getattr(model, "feature_info", None) or []
    stages = [entry.get("module") for entry in info if isinstance(entry, Mapping)]
    featured = [name for name in dict.fromkeys(stages) if isinstance(name, str) and name in modules]
    if not featured:
        featured = [name for name, _ in model.named_children()]
    head = [name for name in HEAD_LAYERS if name != "pooled" or hasattr(model, "forward_head")]
    return featured + head


@functools.lru_cache(maxsize=4)
def _meta_skeleton(model_name: str) -> nn.Module | None:
    """A model on the meta device, for module names and dry-run shapes: no memory, no initialization, no compute.

    ``None`` where timm cannot build the model there (some compute values in ``__init__`` with ``.item()``).
    """
    try:
        with torch.device("meta"):
            return timm.create_model(model_name, pretrained=False).eval()
    except Exception:  # whatever the reason, the caller falls back to a real model
        return None


def timm_variants(prefix: str | None = None) -> list[str]:
    """Variant names to list: the main layers of one model, ``<model>:<layer>``.

    Args:
        prefix: what the user asked for after ``timm:`` (``"vit_tiny_patch16_224"`` or ``"resnet18:lay*"``); the
            model named there is listed. ``None`` lists :data:`EXAMPLE_MODEL`'s. Every layer of every timm model
            would be tens of thousands of names, so patterns over models list nothing.

    Returns:
        ``["<model>:<layer>", …]``; empty when the model is unknown or given as a pattern.
    """
    model_name = EXAMPLE_MODEL if prefix is None else prefix.split(":", 1)[0].rstrip("*")
    if not model_name or any(c in model_name for c in "*?[") or not timm.is_model(model_name):
        return []
    model = _meta_skeleton(model_name) or timm.create_model(model_name, pretrained=False)
    return [f"{model_name}:{layer}" for layer in featured_layers(model)]


def _pretrained_state_dict(model_name: str, pretrained_cfg: Mapping[str, Any]) -> dict[str, Tensor]:
    """timm's pretrained weights for ``model_name``, through ``timm.create_model(pretrained=True)`` and its cache."""
    alternatives = (f"use --rep-opt weights=none for random weights, or --rep-opt "
                    f"weights=/path/to/{model_name}.safetensors (or .pth, timm's key format) for a local copy")
    if not any(pretrained_cfg.get(key) for key in ("hf_hub_id", "url", "file", "state_dict")):
        raise WeightsUnavailable(f"timm has no pretrained weights for {model_name}; {alternatives}")
    try:
        # timm's own loader: it knows each model's source and any key conversion its checkpoint needs.
        with _hub_offline_unless_reachable(bool(pretrained_cfg.get("hf_hub_id"))):
            source = timm.create_model(model_name, pretrained=True)
    except Exception as error:  # no network, no cache, a truncated download: all mean "not available"
        reason = describe_error(error)
        raise WeightsUnavailable(f"timm's pretrained weights for {model_name} could not be obtained "
                                 f"({type(error).__name__}: {reason}); {alternatives}") from None
    return source.state_dict()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub endpoint (``HF_ENDPOINT``) opens within ``timeout``."""
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline_unless_reachable(from_hub: bool) -> Iterator[None]:
    """Put the Hub client in offline mode for the block when the Hub cannot be reached.

    Without a network the client retries each request for about 45 s before trying its cache; in offline mode it
    reads the cache at once, and fails at once when the weights are not there.
    """
    import huggingface_hub.constants as hub

    if not from_hub or hub.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = False


class TimmLayer(DeferredWeights, Representation):
    """One layer of a timm model, brought to a feature map or vector.

    Args:
        model_name: a timm model name, optionally with a pretrained tag (``"resnet18.a1_in1k"``).
        layer: a module name from ``named_modules()``, ``"pooled"`` or ``"logits"``.
        weights: ``pretrained`` (timm's), ``none`` (random, seeded by ``seed``) or the path of a ``.safetensors`` /
            ``.pth`` state dict in timm's key format. Loaded on first use.
        seed: seeds the random initialization; the same seed gives the same weights.
        layout: how a 4-D output is read: ``auto`` (from its shape), ``NCHW`` or ``NHWC``.
        tag: the pretrained tag (``"a1_in1k"``), for a model name without one; ``None`` takes timm's default and
            :meth:`config` records which that was, so a run rebuilds the same weights, input size and
            normalization even if a later timm changes the default.
        input_size: the side images are resized to before the network; ``None`` is the model's pretrained input
            size (224 for most). A smaller side makes the network cheaper (a 64x64 image need not be upsampled for a
            perceptual loss) and its maps smaller.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB in [0, 1], any size; resized to the input size and normalized inside.
        - Output: ``(B, C, h, w)`` or ``(B, D)``; see :meth:`spec`.

    Example:
        >>> TimmLayer("resnet18", "layer3", weights="none")(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 256, 14, 14])
    """

    differentiable = True
    per_image = False
    _specs: ClassVar[dict[tuple[str, str, str, tuple[int, int]], tuple[int, ...]]] = {}  # model, layer, layout, size
    mean: Tensor  # buffers, registered in __init__: (1, C, 1, 1)
    std: Tensor

    def __init__(self, model_name: str, layer: str, weights: Any = "pretrained", seed: int = 0,
                 layout: str = "auto", tag: str | None = None, input_size: int | None = None) -> None:
        super().__init__()
        options = validate_options("timm", {"weights": weights, "seed": seed, "layout": layout, "tag": tag,
                                            "input_size": input_size}, OPTIONS)
        seed, layout, tag, self.input_side = options["seed"], options["layout"], options["tag"], options["input_size"]
        if not timm.is_model(model_name):
            raise UnknownModel(model_name, available=timm.list_models())
        base, _, named_tag = model_name.partition(".")
        if tag is not None:
            tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{base}.*")]
            if named_tag and tag != named_tag:
                raise option_error("timm", "tag", f"{named_tag!r} (the tag in {model_name}) or null", tag)
            if tag not in tags:
                raise option_error("timm", "tag", f"a pretrained tag of {model_name} ({', '.join(tags) or 'none'}) "
                                                  "or null", tag)
        self.model_name, self.layer, self.seed, self.layout = model_name, layer, seed, layout
        self.weights = parse_weights(weights, "timm", "pretrained", " in timm's key format")
        self.name = f"timm:{model_name}:{layer}"
        self.full_name = f"{model_name}.{tag}" if tag and not named_tag else model_name  # what timm builds
        with torch.random.fork_rng(devices=[]):  # timm's initialization, seeded without touching the global state
            torch.manual_seed(seed)
            self.model = timm.create_model(self.full_name, pretrained=False)
        # Channels-last weights: 1.3-1.8x the images/s of the default layout on a 2-core CPU (EfficientNet-Lite0,
        # ResNet-18), features equal to float rounding (docs/benchmarks.md, bench/encoders.py); CUDA's fast layout too.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.tag = named_tag or (getattr(self.model, "pretrained_cfg", None) or {}).get("tag") or None
        modules = dict(self.model.named_modules())
        if layer not in HEAD_LAYERS and (layer not in modules or not layer):
            featured = featured_layers(self.model)
            others = [name for name in modules if name and name not in featured]
            raise UnknownVariant(f"{model_name}:{layer}", available=[f"{model_name}:{n}" for n in featured + others])
        if layer == "pooled" and not hasattr(self.model, "forward_head"):
            raise UnknownVariant(f"{model_name}:{layer}", available=[
                f"{model_name}:{n}" for n in featured_layers(self.model)])
        # The model's data config (input_size, interpolation, mean, std, ...).
        data: dict[str, Any] = resolve_data_config(  # type: ignore[no-untyped-call]  # timm's is unannotated
            {}, model=self.model)
        channels, height, width = (int(v) for v in data["input_size"])
        if channels not in (1, 3):
            raise InvalidOption(f"timm model {model_name} takes {channels}-channel images; repinv gives RGB")
        self.input_size = (height, width) if self.input_side is None else (self.input_side, self.input_side)
        self.interpolation = "bicubic" if data.get("interpolation") == "bicubic" else "bilinear"  # others: bilinear
        mean = torch.tensor(data["mean"], dtype=torch.float32).view(1, channels, 1, 1)
        std = torch.tensor(data["std"], dtype=torch.float32).view(1, channels, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.defer_weights(None if self.weights == "none" else self.weights,
                           rebuildable=self.weights == "pretrained")
        self.eval()  # a feature extractor: dropout and batch statistics only when someone trains it

    def fetch_weights(self, source: str) -> tuple[dict[str, Tensor], str]:
        """timm's own pretrained weights (``pretrained``) or a local weights file in timm's key format."""
        if source == "pretrained":
            state = _pretrained_state_dict(self.full_name, getattr(self.model, "pretrained_cfg", {}) or {})
            return state, f"timm's pretrained weights for {self.full_name}"
        return read_state_dict(source, "timm weights file"), f"timm weights file {source!r}"

    def _prepare(self, images: Tensor) -> Tensor:
        """Resize to the model's input size and normalize (luma first for a one-channel model)."""
        if self.mean.shape[1] == 1:
            images = rgb_to_gray(images)
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode=self.interpolation, antialias=True,
                                   align_corners=False)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def _features(self, model: nn.Module, inputs: Tensor, batch: int) -> Tensor:
        """The layer's output of ``model`` (this representation's, or a meta-device twin) on prepared inputs."""
        if self.layer == "logits":
            output = model(inputs)
        elif self.layer == "pooled":
            if not isinstance(model, _PreLogits):  # the constructor checked; timm pairs the two methods
                raise UnknownVariant(f"{self.model_name}:{self.layer}", available=[
                    f"{self.model_name}:{n}" for n in featured_layers(model)])
            output = model.forward_head(model.forward_features(inputs), pre_logits=True)
        else:
            output = capture(model, model.get_submodule(self.layer), inputs)
        return self._shaped(model, output, batch)

    def _shaped(self, model: nn.Module, output: object, batch: int) -> Tensor:
        """A module's output brought to repinv's shapes (:func:`to_features`) with this layer's options."""
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        return to_features(output, batch=batch, input_size=self.input_size,
                           num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 0) or 0), grid=grid,
                           layout=self.layout, default_layout=str(getattr(model, "output_fmt", "NCHW")),
                           what=self.name)

    def forward(self, images: Tensor) -> Tensor:
        """Compute the layer's output.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

        Returns:
            ``(B, C, h, w)`` or ``(B, D)`` features, differentiable with respect to ``images``.
        """
        check_images(images)
        self.load_weights()
        return self._features(self.model, self._prepare(images), images.shape[0])

    def forward_together(self, images: Tensor, others: Sequence[Representation]) -> list[Tensor] | None:
        """The features of this layer and of other layers of the same model, from one forward pass.

        Shared when every one of ``others`` is a layer of the same timm model with the same weights, seed and tag
        (their networks equal, parameter by parameter); ``layout`` may differ. The images are prepared once and
        each layer's output taken from the same pass, so every feature tensor is exactly what the layer's own
        :meth:`forward` gives: module layers by forward hooks (:func:`capture_many`, which stops after the last of
        them); with ``pooled`` or ``logits`` among them, the body runs once (:func:`record_outputs`) and the head
        on its output (timm's ``forward`` is ``forward_head(forward_features(x))``).

        Returns:
            The features of ``self`` and ``others``, in order; ``None`` when they cannot share the pass.
        """
        group: list[TimmLayer] = [self]
        for other in others:
            if not isinstance(other, TimmLayer) or other.full_name != self.full_name or \
                    _without_layout(other.config()) != _without_layout(self.config()):
                return None
            group.append(other)
        check_images(images)
        for layer in group:
            layer.load_weights()
        if not all(same_network(self.model, layer.model) for layer in group[1:]) or \
                not all(torch.equal(self.mean, layer.mean) and torch.equal(self.std, layer.std) for layer in group):
            return None
        model, inputs = self.model, self._prepare(images)
        heads = [layer.layer for layer in group if layer.layer in HEAD_LAYERS]
        bodies = [layer.layer for layer in group if layer.layer not in HEAD_LAYERS]
        modules = [model.get_submodule(name) for name in bodies]
        if not heads:
            outputs = dict(zip(bodies, capture_many(model, modules, inputs)))
        elif not isinstance(model, _PreLogits):
            return None
        else:
            def body_then_heads() -> dict[str, Any]:
                features = model.forward_features(inputs)
                return {name: model.forward_head(features, pre_logits=name == "pooled") for name in heads}

            outputs, taken = record_outputs(model, modules, body_then_heads)
            outputs.update(zip(bodies, taken))
        return [layer._shaped(model, outputs[layer.layer], images.shape[0]) for layer in group]

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """The feature shape; the same for every image size (images are resized). Loads no weights.

        Computed once per model, layer and layout by a dry run: on the meta device where timm can build the model
        there (no compute), else of this representation's model in evaluation mode (shapes do not depend on the
        weights, so pending ones are not loaded).
        """
        if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
            raise ShapeError(f"image_size must be (H, W) with positive sides, got {tuple(image_size)}")
        key = (self.full_name, self.layer, self.layout, self.input_size)
        if key not in self._specs:
            self._specs[key] = self._dry_run()
        return FeatureSpec(self._specs[key])

    def _dry_run(self) -> tuple[int, ...]:
        channels = self.mean.shape[1]
        skeleton = _meta_skeleton(self.full_name)
        if skeleton is not None:
            try:
                probe = torch.zeros(1, channels, *self.input_size, device="meta")
                return tuple(self._features(skeleton, probe, 1).shape[1:])
            except ShapeError:
                raise
            except Exception:  # an operation without a meta kernel: run the real model instead
                pass
        reference = next(iter(self.model.parameters()), None)
        probe = torch.zeros(1, channels, *self.input_size, device=reference.device if reference is not None else "cpu",
                            dtype=reference.dtype if reference is not None else torch.float32)
        was_training = self.model.training
        self.model.eval()  # the dry run must not update batch-norm statistics
        try:
            with torch.no_grad():
                return tuple(self._features(self.model, probe, 1).shape[1:])
        finally:
            self.model.train(was_training)

    def config(self) -> dict[str, Any]:
        """All options, JSON-able: ``create_representation(self.name, **config)`` rebuilds this representation."""
        config = {"weights": self.weights, "seed": self.seed, "layout": self.layout, "tag": self.tag}
        # Only when given: the options of runs made before input_size existed stay the same.
        return config if self.input_side is None else {**config, "input_size": self.input_side}

    def extra_repr(self) -> str:
        """Model, layer and options, for ``repr``."""
        return (f"model={self.model_name!r}, layer={self.layer!r}, weights={self.weights!r}, seed={self.seed}, "
                f"layout={self.layout!r}, input_size={self.input_size}")


def _without_layout(config: dict[str, Any]) -> dict[str, Any]:
    """A layer's options but ``layout``, which only reads the output: the ones the network's computation depends on."""
    return {key: value for key, value in config.items() if key != "layout"}


def create_timm(variant: str | None = None, **options: Any) -> TimmLayer:
    """The ``timm`` factory: ``variant`` is ``<model>:<layer>``.

    Args:
        variant: ``"resnet18:layer3"``; a model without a layer raises :class:`UnknownVariant` listing its layers.
        **options: ``weights`` (``pretrained``, ``none`` or a path; default ``pretrained``), ``seed`` (int, 0),
            ``layout`` (``auto``, ``NCHW``, ``NHWC``), ``tag`` (a pretrained tag; default timm's, recorded),
            ``input_size`` (the side images are resized to; default the model's pretrained input size).

    Returns:
        The representation; no weights are loaded until it is used.

    Raises:
        UnknownVariant: no model, an unknown model (nearest timm models listed), no layer or an unknown layer
            (the model's main layers listed, nearest first).
        InvalidOption: an unknown option, or a bad value.
    """
    options = validate_options("timm", options, OPTIONS)
    if not variant:
        raise UnknownModel(None)
    model_name, sep, layer = variant.partition(":")
    if not timm.is_model(model_name):
        raise UnknownModel(model_name, available=timm.list_models())
    if not sep or not layer:
        raise UnknownVariant(None, available=timm_variants(model_name))
    return TimmLayer(model_name, layer, **options)

