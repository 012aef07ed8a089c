"""The package's shape: the import graph follows the pipeline, and the run directory's file names have one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "repinv"

#: Lower layers first. A module may import its own layer or lower ones, never a higher one; modules of one layer
#: must not import each other in a cycle. The same order is stated in docs/architecture.md.
LAYERS = (
    ("repinv.errors",),
    ("repinv.options", "repinv.utils"),
    ("repinv.progress", "repinv.files", "repinv.pictures", "repinv.rundir"),
    ("repinv.representations",),
    ("repinv.registry",),
    ("repinv.data", "repinv.decoders", "repinv.losses"),
    ("repinv.inversion",),
    ("repinv.analysis",),
    ("repinv.training",),
    ("repinv.cli", "repinv.__main__", "repinv"),
)

#: Every file name of a run directory; only repinv/rundir.py may spell them.
RUN_FILES = ("decoder.safetensors", "encoder.safetensors", "mean_image.safetensors", "state.safetensors",
             "state.json", "metrics.jsonl", "config.json", "linear.safetensors", "evaluation.json",
             "evaluation.png", '"samples"', '"best"', '"analysis"', "step-")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    best = max(((len(prefix), rank) for rank, group in enumerate(LAYERS) for prefix in group
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer of tests/test_package.py: place it there and in the docs"
    return best[1]


def _imports(module: str) -> set[str]:
    """The repinv modules ``module`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            pytest.fail(f"{module} uses a relative import; repinv imports absolutely")
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_no_higher_layer(module: str) -> None:
    higher = sorted(name for name in GRAPH[module] if _layer(name) > _layer(module))
    assert not higher, f"{module} (layer {_layer(module)}) imports higher layers: {higher}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in sorted(GRAPH[module]):
            if state.get(name) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(name):], name]))
            if name not in state:
                visit(name, [*path, name])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_the_core_never_imports_plugins() -> None:
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not [name for name in imported if name.startswith("repinv_")], module


def test_only_the_run_directory_module_spells_run_file_names() -> None:
    spelled = [f"{module}: {name}" for module, path in MODULES.items() if module != "repinv.rundir"
               for name in RUN_FILES if name in path.read_text()]
    assert not spelled, f"run-directory file names outside repinv/rundir.py: {spelled}"
