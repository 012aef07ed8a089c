"""The plugin manager: registration through hooks, first-wins duplicates, broken plugins, REPINV_PLUGINS."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import repinv
from repinv import hookimpl
from repinv.errors import UnknownRepresentation, UnknownVariant
from repinv.registry.manager import RepinvPluginWarning, get_registry


class Doubler(repinv.Representation):
    name = "doubler"

    def forward(self, images):
        return images * 2


class DoublerPlugin:
    @hookimpl
    def register_representations(self, register):
        register("doubler", lambda variant, **options: Doubler(), description="test plugin",
                 variants=lambda: ["a", "b"])

    @hookimpl
    def register_decoders(self, register):
        register("identity", lambda spec, output_size, **options: torch.nn.Identity())

    @hookimpl
    def register_perturbations(self, register):
        register("negate", lambda features, arg, *, generator: -features, description="flip signs")


@pytest.fixture
def doubler_plugin():
    name = repinv.register_plugin(DoublerPlugin(), name="doubler-plugin")
    yield name
    repinv.unregister_plugin(name)


def test_builtins_load_through_entry_points():
    registry = get_registry()
    assert registry.representations["hog"].plugin == "hog"
    assert {"conv", "fc"} <= set(registry.decoders)
    assert registry.decoders["conv"].plugin == "repinv.decoders.paper"
    assert registry.decoders["residual"].plugin == "repinv.decoders.residual"


def test_inline_plugin_registers_all_three_kinds_and_unregisters(doubler_plugin):
    registry = get_registry()
    assert registry.representations["doubler"].plugin == "doubler-plugin"
    assert "identity" in registry.decoders and "negate" in registry.perturbations
    assert repinv.list_representations("doub*") == ["doubler:a", "doubler:b"]
    assert repinv.list_representations("doubler") == ["doubler:a", "doubler:b"]
    rep = repinv.create_representation("doubler:a")
    assert torch.equal(rep(torch.ones(1, 3, 4, 4)), 2 * torch.ones(1, 3, 4, 4))
    repinv.unregister_plugin(doubler_plugin)
    assert "doubler" not in get_registry().representations
    repinv.register_plugin(DoublerPlugin(), name=doubler_plugin)  # for the fixture's teardown


def test_duplicate_name_keeps_first_and_warns_naming_both(doubler_plugin):
    class Hijacker:
        @hookimpl
        def register_representations(self, register):
            register("hog", lambda variant, **options: Doubler())

    name = repinv.register_plugin(Hijacker(), name="hijacker")
    try:
        with pytest.warns(RepinvPluginWarning, match=r"'hijacker'.*'hog'.*plugin 'hog' already registered"):
            registry = get_registry()
        assert registry.representations["hog"].plugin == "hog"
    finally:
        repinv.unregister_plugin(name)


def test_plugin_failing_in_hook_becomes_warning_and_others_work():
    class Broken:
        @hookimpl
        def register_representations(self, register):
            raise RuntimeError("boom")

    name = repinv.register_plugin(Broken(), name="broken")
    try:
        with pytest.warns(RepinvPluginWarning, match="'broken' failed in register_representations.*boom"):
            registry = get_registry()
        assert "hog" in registry.representations
    finally:
        repinv.unregister_plugin(name)


def test_unknown_family_lists_what_exists():
    with pytest.raises(UnknownRepresentation, match=r"unknown representation 'hgo'; available: hog"):
        repinv.create_representation("hgo")


def test_unknown_variant_names_family_and_nearest_first(doubler_plugin):
    class Layered:
        @hookimpl
        def register_representations(self, register):
            def factory(variant, **options):
                raise UnknownVariant(variant, available=["conv1", "conv2", "fc6", "fc7", "fc8"])
            register("layered", factory)

    name = repinv.register_plugin(Layered(), name="layered")
    try:
        expected = r"unknown layer 'fc9' for layered; available: fc8, fc7, fc6, conv1, conv2"
        with pytest.raises(UnknownVariant, match=expected):
            repinv.create_representation("layered:fc9")
    finally:
        repinv.unregister_plugin(name)


def test_variants_may_receive_what_was_asked_for():
    asked_for = []

    class Zoo:
        @hookimpl
        def register_representations(self, register):
            def variants(asked):
                asked_for.append(asked)
                model = (asked or "small").split(":")[0]
                return [f"{model}:stem", f"{model}:head"]
            register("zoo", lambda variant, **options: None, variants=variants)

    name = repinv.register_plugin(Zoo(), name="zoo")
    try:
        assert repinv.list_representations("zoo") == ["zoo:small:stem", "zoo:small:head"]  # the family's order
        assert repinv.list_representations("zoo:big") == ["zoo:big:stem", "zoo:big:head"]
        assert repinv.list_representations("zoo:big:st*") == ["zoo:big:stem"]
        assert repinv.list_representations("zo*") == ["zoo:small:stem", "zoo:small:head"]
        assert asked_for == [None, "big", "big:st*", None]
    finally:
        repinv.unregister_plugin(name)


def test_split_name_at_first_colon():
    from repinv.representations.base import split_name

    assert split_name("timm:resnet18:layer3") == ("timm", "resnet18:layer3")
    assert split_name("hog") == ("hog", None)


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_repinv_plugins_env_restricts_entry_points_but_core_always_loads():
    code = ("from repinv.registry.manager import get_registry; r = get_registry(); "
            "print(sorted(r.representations), sorted(r.decoders))")
    restricted = _run_python(code, REPINV_PLUGINS="nosuch")
    assert restricted.returncode == 0, restricted.stderr
    assert restricted.stdout.strip() == "[] ['conv', 'fc', 'residual']"
    allowed = _run_python(code, REPINV_PLUGINS="hog")
    assert allowed.stdout.startswith("['hog']")


def test_plugins_load_lazily_not_at_import():
    result = _run_python("import repinv, repinv.registry.manager as p; print(p._manager is None)")
    assert result.stdout.strip() == "True", result.stderr


def test_broken_entry_point_warns_and_others_keep_working(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[repinv]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('missing dependency xyz')\n")
    code = "from repinv.registry.manager import get_registry; print(sorted(get_registry().representations))"
    import os

    result = _run_python(code, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    assert result.returncode == 0, result.stderr
    assert "hog" in result.stdout
    assert "plugin 'broken'" in result.stderr and "missing dependency xyz" in result.stderr
