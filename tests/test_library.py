"""Every command is a library call (issue 19): `cli/` parses and prints, the logic lives below
it. These read the code: no argparse namespace travels below `cli/`, and `cli/` builds none of
the objects that wiring a command takes (models, generators, judges, run folders, tasks)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "corral"
# Names whose use means a command is being wired, not parsed: they belong to the library.
WIRING = {"RunStore", "generator_for", "engine_for", "load_policy", "Judge", "get_task",
          "load_grader", "run_strategies", "compare_models", "evaluate", "load_items",
          "make_pairs", "sample_task", "run_generation", "SamplingParams", "new_run_name"}
NAMESPACE_PARAMS = {"args", "ns", "namespace", "parsed"}


def library_modules():
    return sorted(p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] != "cli")


def cli_modules():
    return sorted((ROOT / "cli").glob("*.py"))


def namespace_uses(tree: ast.AST) -> list[str]:
    """Functions that take a parameter named like a namespace and read attributes of it."""
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = {a.arg for a in fn.args.args + fn.args.kwonlyargs} & NAMESPACE_PARAMS
        for node in ast.walk(fn):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in params):
                found.append(f"{fn.name}() reads {node.value.id}.{node.attr}")
                break
    return found


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_argparse_namespace_below_cli(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names] + [node.module for node in ast.walk(tree)
                                       if isinstance(node, ast.ImportFrom) and node.module]
    assert "argparse" not in imports, f"corral/{path.relative_to(ROOT)} imports argparse"
    assert not namespace_uses(tree), f"corral/{path.relative_to(ROOT)}: {namespace_uses(tree)}"


@pytest.mark.parametrize("path", cli_modules(), ids=lambda p: p.name)
def test_cli_only_parses_and_prints(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} & WIRING
                  | {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
                  & WIRING)
    assert not used, (f"corral/cli/{path.name} wires the library itself ({', '.join(used)}); "
                      "move that into a library function of corral.api and call it")


def test_the_checks_can_fail():
    tree = ast.parse("def cmd(args):\n    return args.model\n")
    assert namespace_uses(tree) == ["cmd() reads args.model"]
