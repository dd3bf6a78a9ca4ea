"""The pipeline's layering, enforced: no module imports a stage above it.

    source / policy  ->  clusters  ->  translate  ->  engine  ->  plan / status  ->  dataplane
        ->  driver (reconcile, serve, output, logs, settings)  ->  commands

Lower layers are the ones that know less: the engine may use translation's types but never the
plan or the CLI; the translation never touches clusters' clients. A new import that breaks the
order fails here with the offending line, which is cheaper than finding the cycle at import time.
See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"

LAYERS: list[tuple[str, ...]] = [
    # 0: leaves: value types and helpers every stage may use
    (
        "reconciler",
        "reconciler.errors",
        "reconciler.findings",
        "reconciler.yamlio",
        "reconciler.locality",
        "reconciler.tenancy",
        "reconciler.validation",
        "reconciler.markdown",
        "reconciler.shard",
        "reconciler.gcpause",
        "reconciler.digest",
        "reconciler.sharing",
        "reconciler.malloc",
    ),
    ("reconciler.repo_config",),
    ("reconciler.policy", "reconciler.source"),
    ("reconciler.clusters",),
    ("reconciler.translate",),
    ("reconciler.engine",),
    ("reconciler.plan", "reconciler.buildcache", "reconciler.status"),
    ("reconciler.dataplane", "reconciler.impact"),
    (
        "reconciler.reconcile",
        "reconciler.serve",
        "reconciler.output",
        "reconciler.logs",
        "reconciler.settings",
        "reconciler.impact_output",
    ),
    ("reconciler.commands", "reconciler.__main__"),
]


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            # the root package names only its own __init__, never "everything not listed"
            inside = module.startswith(prefix + ".") and prefix != "reconciler"
            if (module == prefix or inside) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``reconciler`` import, type-checking-only imports included."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "reconciler":
                # ``from reconciler import x`` names a module when x is one
                if node.module == "reconciler":
                    for alias in node.names:
                        is_module = (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()
                        out.append((node.lineno, f"reconciler.{alias.name}" if is_module else "reconciler"))
                else:
                    out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "reconciler")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_it(path: Path) -> None:
    here = module_name(path)
    mine = layer_of(here)
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {here} (layer {mine}) imports {target} (layer {layer_of(target)})"
        for line, target in imports(path)
        if layer_of(target) > mine
    ]
    assert upward == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The rule is not vacuous: the engine importing the plan is exactly what it must reject.
    assert layer_of("reconciler.plan") > layer_of("reconciler.engine.sync")
    assert layer_of("reconciler.commands.app") > layer_of("reconciler.output")
    fake = tmp_path / "m.py"
    fake.write_text("from reconciler.plan import Plan\nimport reconciler.commands\n")
    assert [t for _, t in imports(fake)] == ["reconciler.plan", "reconciler.commands"]
