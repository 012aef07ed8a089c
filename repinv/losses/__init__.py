"""Losses: what a decoder is trained to minimize, a weighted sum of named terms registered by plugins.

* ``base`` — :class:`LossTerm` (what a ``register_losses`` factory returns), :class:`TrainingLoss` (the weighted
  sum a run trains with) and the ``mse + 0.01*feature`` syntax;
* ``pixel`` — ``mse``, the paper's loss and the default;
* ``perceptual`` — ``feature``, the distance in a frozen network's features, and the :class:`Comparator` that the
  perceptual metric shares;
* ``adversarial`` — ``adversarial``, a discriminator trained in alternation with the decoder, with its guard.
"""

from repinv.losses.base import DEFAULT_LOSS, LossTerm, TrainingLoss, format_loss, list_losses, parse_loss
from repinv.losses.perceptual import Comparator

__all__ = ["LossTerm", "TrainingLoss", "Comparator", "parse_loss", "format_loss", "list_losses", "DEFAULT_LOSS"]
