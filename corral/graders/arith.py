"""Safe arithmetic for a `multi` grader's `calculate_output`: `ast` parsing against an allow-list.

Nothing is ever passed to `eval`; the tree is walked by `_evaluate` below.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Iterable

from corral.core.errors import CorralError

FUNCTIONS = {
    "min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil,
    "exp": math.exp, "sqrt": math.sqrt, "log": math.log,
}
# (fewest, most) arguments; log(x, base) is allowed like math.log.
_ARITY = {"min": (1, None), "max": (1, None), "log": (1, 2)}
_BINARY = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}


def _parse(expr: str) -> ast.expr:
    if not isinstance(expr, str) or not expr.strip():
        raise CorralError("calculate_output: the expression is empty; "
                          "write e.g. '0.5 * a + 0.5 * b'.")
    # `^` means power here (as in OpenAI's grader docs); rewriting it textually also gives it
    # power's precedence, which ast's BitXor would not. No string literals are allowed, so a
    # `^` can never sit inside one.
    try:
        return ast.parse(expr.replace("^", "**"), mode="eval").body
    except SyntaxError as exc:
        raise CorralError(f"calculate_output {expr!r}: not a valid expression ({exc.msg}); "
                          "use numbers, grader names, + - * / ^ and parentheses.") from None


def _check(node: ast.AST, names: set[str], expr: str) -> None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return
    if isinstance(node, ast.Name):
        if node.id not in names:
            known = ", ".join(sorted(names)) or "none"
            raise CorralError(f"calculate_output {expr!r}: unknown name {node.id!r}; "
                              f"use one of the grader names ({known}).")
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, names, expr)
        _check(node.right, names, expr)
        return
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, names, expr)
        return
    if isinstance(node, ast.Call):
        _check_call(node, names, expr)
        return
    raise CorralError(f"calculate_output {expr!r}: {ast.unparse(node)!r} is not allowed; "
                      "use numbers, grader names, + - * / ^, parentheses and "
                      f"{', '.join(FUNCTIONS)}.")


def _check_call(node: ast.Call, names: set[str], expr: str) -> None:
    func = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    if func not in FUNCTIONS:
        raise CorralError(f"calculate_output {expr!r}: unknown function {func!r}; "
                          f"use one of {', '.join(FUNCTIONS)}.")
    fewest, most = _ARITY.get(func, (1, 1))
    n = len(node.args)
    if node.keywords or n < fewest or (most is not None and n > most):
        raise CorralError(f"calculate_output {expr!r}: {func}() got the wrong arguments; "
                          f"give it {fewest if most == fewest else f'{fewest} or more'} "
                          "positional argument(s).")
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise CorralError(f"calculate_output {expr!r}: *args is not allowed in {func}().")
        _check(arg, names, expr)


def validate_expr(expr: str, names: Iterable[str]) -> ast.expr:
    """Parse and check `expr` against the allow-list; raise CorralError naming what is wrong."""
    tree = _parse(expr)
    _check(tree, set(names), expr)
    return tree


def _evaluate(node: ast.expr, values: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)  # floats overflow fast; int powers like 9**9**9 would not
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    return FUNCTIONS[node.func.id](*(_evaluate(a, values) for a in node.args))


def safe_eval(expr: str, names: dict[str, float]) -> float:
    """Evaluate `expr` with `names` bound to numbers.

    Invalid expressions raise CorralError; math failures at run time (division by zero,
    sqrt or log of a negative, overflow) raise ValueError, which graders turn into a 0.
    """
    tree = validate_expr(expr, names)
    try:
        value = float(_evaluate(tree, {k: float(v) for k, v in names.items()}))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ValueError(f"calculate_output {expr!r} failed: {exc}") from None
    if not math.isfinite(value):
        raise ValueError(f"calculate_output {expr!r} gave {value}, not a finite number")
    return value
