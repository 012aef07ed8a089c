"""Loss terms: the syntax, each built-in term on a tiny problem, the discriminator and its guard, and a third party's
term registered through the hook."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from repinv.errors import InvalidOption, TrainingFailed, UnknownName
from repinv.losses import LossTerm, TrainingLoss, format_loss, list_losses, parse_loss
from repinv.losses.adversarial import AdversarialLoss, Discriminator
from repinv.registry.hookspecs import hookimpl
from repinv.registry.manager import register_plugin, unregister_plugin
from repinv.representations.base import FeatureSpec
from repinv.training.config import make_config
from repinv.training.loop import train

SPEC = FeatureSpec((8, 4, 4))


def test_the_built_in_terms_are_registered_through_the_hook() -> None:
    assert {"mse", "feature", "adversarial"} <= set(list_losses())


@pytest.mark.parametrize(("text", "weights"), [
    ("mse", {"mse": 1.0}),
    ("mse + 0.01*feature", {"mse": 1.0, "feature": 0.01}),
    (" 2 * mse+1e-3*adversarial ", {"mse": 2.0, "adversarial": 0.001}),
    ({"mse": 1, "feature": 0.5}, {"mse": 1.0, "feature": 0.5}),
])
def test_parse_and_format_round_trip(text: str | dict[str, float], weights: dict[str, float]) -> None:
    assert parse_loss(text) == weights
    assert parse_loss(format_loss(weights)) == weights


@pytest.mark.parametrize(("text", "error", "match"), [
    ("mse + perceptual", UnknownName, r"unknown loss term 'perceptual'; available: .*mse"),
    ("mse + -1*feature", InvalidOption, "feature needs a positive weight, got '-1'"),
    ("mse + 0*feature", InvalidOption, "feature needs a positive weight, got '0'"),
    ("mse + nan*feature", InvalidOption, "positive weight"),
    ("mse + mse", InvalidOption, "given twice"),
    ("", InvalidOption, "cannot read loss term"),
    ({"mse": True}, InvalidOption, "positive weight"),
])
def test_bad_losses_are_refused_in_one_line(text: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        parse_loss(text)
    assert "\n" not in str(caught.value)


def test_options_for_a_term_not_in_the_loss_are_refused() -> None:
    with pytest.raises(InvalidOption, match="options for loss term adversarial, which the loss"):
        TrainingLoss({"mse": 1.0}, {"adversarial": {"lr": 1e-3}}, SPEC, (16, 16))


def test_feature_term_needs_a_differentiable_comparator() -> None:
    with pytest.raises(InvalidOption, match="needs a comparator"):
        TrainingLoss({"feature": 1.0}, {}, SPEC, (16, 16))
    with pytest.raises(InvalidOption, match="comparator lbp is not differentiable"):
        TrainingLoss({"feature": 1.0}, {"feature": {"rep": "lbp"}}, SPEC, (16, 16))


def _descend(loss: TrainingLoss, steps: int = 30) -> list[float]:
    """Fit free images to targets under ``loss`` with Adam; the loss at each step."""
    torch.manual_seed(0)
    target = torch.rand(4, 3, 32, 32)
    images = torch.rand(4, 3, 32, 32).requires_grad_()
    optimizer = torch.optim.Adam([images], lr=0.02)
    values = []
    for _ in range(steps):
        total, _ = loss(images, target, torch.zeros(4, *SPEC.shape))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        values.append(total.item())
    return values


@pytest.mark.parametrize(("term", "options"), [("mse", {}), ("feature", {"feature": {"rep": "hog"}})])
def test_mse_and_feature_each_decrease(term: str, options: dict) -> None:  # type: ignore[type-arg]
    values = _descend(TrainingLoss({term: 1.0}, options, SPEC, (32, 32)))
    assert values[-1] < 0.5 * values[0]


def test_feature_term_compares_frozen_features(tiny_encoder: str) -> None:
    loss = TrainingLoss({"feature": 1.0}, {"feature": {"rep": tiny_encoder}}, SPEC, (32, 32))
    comparator = loss.terms["feature"].comparator
    assert not any(p.requires_grad for p in comparator.parameters())
    loss.train()
    assert not comparator.training  # dropout stays off, whatever mode the loss is in
    images = torch.rand(2, 3, 32, 32)
    value, _ = loss(images, images, torch.zeros(2, *SPEC.shape))
    assert value.item() == 0.0


def test_only_mse_is_exactly_the_paper_loss() -> None:
    reconstructions, images = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    total, values = TrainingLoss({"mse": 1.0}, {}, SPEC, (8, 8))(reconstructions, images, torch.zeros(3, 8, 4, 4))
    assert torch.equal(total, F.mse_loss(reconstructions, images)) and list(values) == ["mse"]


def test_the_discriminator_learns_to_tell_blurred_images_from_sharp_ones() -> None:
    torch.manual_seed(0)
    term = AdversarialLoss(lr=1e-3, width=8)
    term.setup(SPEC, (32, 32))
    accuracies = []
    for _ in range(60):
        images = torch.rand(8, 3, 32, 32)
        fixed_decoder_output = F.avg_pool2d(images, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
        accuracies.append(term.after_step(fixed_decoder_output, images, torch.zeros(8, *SPEC.shape))["accuracy"])
    assert sum(accuracies[:5]) / 5 < 0.8 and sum(accuracies[-10:]) / 10 > 0.95


def test_the_adversarial_term_trains_only_the_decoder_side() -> None:
    term = AdversarialLoss(width=4)
    term.setup(SPEC, (16, 16))
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)
    term(fake, torch.rand(2, 3, 16, 16), torch.zeros(2, *SPEC.shape)).backward()
    assert fake.grad is not None and all(p.grad is None for p in term.parameters())


@pytest.mark.parametrize("spec", [FeatureSpec((8, 4, 4)), FeatureSpec((10,))])
def test_a_conditioned_discriminator_sees_the_features(spec: FeatureSpec) -> None:
    discriminator = Discriminator(4, spec)
    images = torch.rand(2, 3, 32, 32)
    a, b = torch.rand(2, *spec.shape), torch.rand(2, *spec.shape)
    assert discriminator(images, a).shape == (2,) and not torch.equal(discriminator(images, a),
                                                                         discriminator(images, b))


def test_the_guard_stops_a_discriminator_that_wins_outright() -> None:
    loss = TrainingLoss({"mse": 1.0, "adversarial": 0.1}, {"adversarial": {"window": 3, "accuracy": 0.9}}, SPEC,
                        (16, 16))
    term = loss.terms["adversarial"]
    term.after_step = lambda *args: term.accuracies.append(1.0) or {}  # a discriminator always right
    features = torch.zeros(1, *SPEC.shape)
    images = torch.rand(1, 3, 16, 16)
    with pytest.raises(TrainingFailed, match=r"discriminator wins outright: 100.0% accuracy over the last 3 steps "
                                             r"while the other loss terms rose from 1 to 2"):
        for mse in (1, 1, 1, 2, 2, 2):
            loss.after_step(images, images, features, {"mse": mse, "adversarial": 0.5})


def test_the_guard_lets_a_close_game_go_on() -> None:
    loss = TrainingLoss({"mse": 1.0, "adversarial": 0.1}, {"adversarial": {"window": 3}}, SPEC, (16, 16))
    term = loss.terms["adversarial"]
    term.after_step = lambda *args: term.accuracies.append(0.7) or {}
    features, images = torch.zeros(1, *SPEC.shape), torch.rand(1, 3, 16, 16)
    for mse in (1, 1, 1, 2, 2, 2, 3, 3, 3):
        loss.after_step(images, images, features, {"mse": mse, "adversarial": 0.5})


def test_a_loss_that_is_not_finite_stops_training() -> None:
    loss = TrainingLoss({"mse": 1.0}, {}, SPEC, (8, 8))
    with pytest.raises(TrainingFailed, match="loss term mse is nan"):
        loss.after_step(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.zeros(1, *SPEC.shape),
                        {"mse": math.nan})


class _L1(LossTerm):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, reconstructions: torch.Tensor, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.scale * (reconstructions.float() - images).abs().mean()


class _L1Plugin:
    @hookimpl
    def register_losses(self, register: Callable[..., None]) -> None:
        register("l1", lambda **options: _L1(**options), description="mean absolute error (a test plugin)")


def test_a_third_party_term_registered_through_the_hook_trains(photo_folder, tmp_path) -> None:
    name = register_plugin(_L1Plugin(), name="l1-test-plugin")
    try:
        assert "l1" in list_losses()
        config = make_config(rep="hog", image_size=32, width=0.05, steps=4, batch_size=4, workers=0,
                             data=[str(photo_folder)], log_every=2, device="cpu", loss="mse + 0.5*l1",
                             loss_options={"l1": {"scale": 2.0}})
        run = train(config, tmp_path / "run", show_progress=False).run
        log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [sorted(line["terms"]) for line in log] == [["l1", "mse"]] * 2
        assert all(line["loss"] == pytest.approx(line["terms"]["mse"] + 0.5 * line["terms"]["l1"]) for line in log)
        saved = json.loads((run / "config.json").read_text())
        assert saved["loss"] == {"mse": 1.0, "l1": 0.5} and saved["loss_options"] == {"l1": {"scale": 2.0}}
    finally:
        unregister_plugin(name)
    assert "l1" not in list_losses()


@pytest.mark.slow
def test_feature_term_in_the_trained_network_decreases(trained_lite0) -> None:
    options = {"feature": {"rep": "timm:tf_efficientnet_lite0:blocks.2", "weights": str(trained_lite0),
                           "input_size": 32}}
    loss = TrainingLoss({"feature": 1.0}, options, SPEC, (32, 32))
    assert "input_size=32" in loss.terms["feature"].comparator.name
    values = _descend(loss, steps=20)
    assert values[-1] < 0.7 * values[0]
