"""Decoders: the networks that map features back to images, and the rule that sizes them.

* ``base`` — :class:`Decoder` (the module every built-in decoder is) and the sizing rule they share;
* ``paper`` — the paper's ``conv`` (feature maps) and ``fc`` (feature vectors) decoders;
* ``residual`` — repinv's ``residual`` decoder for feature maps (more depth per unit of compute).

Decoders are built by name through the plugin registry (:func:`~repinv.registry.factories.build_decoder`), so a
third party's decoder is used exactly like these, and rebuilt from their JSON :meth:`Decoder.config` with
:func:`~repinv.registry.factories.decoder_from_config`.
"""

from repinv.decoders.base import Decoder, level_channels, up_steps
from repinv.decoders.paper import CONV_OPTIONS, FC_OPTIONS, auto_contract, conv_decoder, fc_decoder
from repinv.decoders.residual import RESIDUAL_OPTIONS, residual_decoder

__all__ = ["Decoder", "conv_decoder", "fc_decoder", "residual_decoder", "up_steps", "auto_contract", "level_channels",
           "CONV_OPTIONS", "FC_OPTIONS", "RESIDUAL_OPTIONS"]
