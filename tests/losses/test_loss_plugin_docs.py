"""The loss plugin example of docs/plugins.md, run verbatim: registered, listed, refused options, trained."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest
from conftest import REPO

from repinv.errors import InvalidOption
from repinv.losses import list_losses
from repinv.registry.manager import register_plugin, unregister_plugin
from repinv.training.config import make_config
from repinv.training.loop import train


def _example() -> types.ModuleType:
    docs = (REPO / "docs" / "plugins.md").read_text()
    section = docs[docs.index("## Loss terms"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "docs/plugins.md lost its loss plugin example"
    module = types.ModuleType("gradient_loss_example")
    exec(compile(code.group(1), "docs/plugins.md", "exec"), module.__dict__)  # our own docs
    return module


def test_the_documented_loss_plugin_trains(photo_folder: Path, tmp_path: Path) -> None:
    name = register_plugin(_example(), name="gradient-example")
    try:
        assert list_losses()["gradient"] == "differences between neighbouring pixels (edges)"
        settings = dict(rep="hog", image_size=32, width=0.05, steps=3, batch_size=4, workers=0,
                        data=[str(photo_folder)], log_every=1, device="cpu", loss="mse + 0.5*gradient")
        with pytest.raises(InvalidOption, match="gradient loss option power must be an integer in \\[1, 2\\], got 3"):
            train(make_config(**settings, loss_options={"gradient": {"power": 3}}), tmp_path / "bad",
                  show_progress=False)
        run = train(make_config(**settings, loss_options={"gradient": {"power": 2}}), tmp_path / "run",
                    show_progress=False).run
        log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert all(line["terms"]["gradient"] > 0 for line in log)
    finally:
        unregister_plugin(name)
