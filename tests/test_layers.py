"""The package's layers import downward only (docs/architecture.md): this reads every module's
imports (top-level and inside functions) and fails on any that points up or sideways."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "corral"
# Lowest first. A module may import its own package or any package of a lower rank.
RANKS = {"core": 0, "data": 1, "store": 1, "model": 2, "infer": 3, "objectives": 3,
         "graders": 4, "tasks": 5, "eval": 6, "train": 6, "synth": 7, "curate": 7,
         "feedback": 7, "prompt": 7, "strategies": 7, "methods": 8, "api": 9, "advisor": 9,
         "serve": 10, "cli": 11, "testing": 2}
TRAINING = {"train", "methods", "objectives"}  # graders, tasks and eval never import these


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "corral" and len(parts) > 1 else None


def corral_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "corral":
                yield from (f"corral.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def modules():
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def test_every_package_has_a_rank():
    packages = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in modules()}
    assert packages <= set(RANKS), f"give these a layer in RANKS: {packages - set(RANKS)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    own = path.relative_to(ROOT).parts[0].removesuffix(".py")
    bad = []
    for module in corral_imports(path):
        other = package_of(module)
        if other is None or other == own or other.startswith("__"):  # corral.__version__
            continue
        if RANKS[other] >= RANKS[own]:
            bad.append(f"{module} (layer {other}, rank {RANKS[other]} >= {own}'s {RANKS[own]})")
        if own in ("graders", "tasks", "eval") and other in TRAINING:
            bad.append(f"{module}: {own} must not import training code")
    assert not bad, f"corral/{path.relative_to(ROOT)} imports upward: " + "; ".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    """The test itself can fail: a planted upward import is found."""
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from corral.methods.runner import run\n")
    assert "corral.methods.runner" in set(corral_imports(planted))
