"""`corral lineage` as a library call: where a run's behaviour came from (base model,
teachers, data, students), as the lines of a tree and the flags worth a look.

    result = lineage(LineageOptions("my-run")); print("\\n".join(result.lines))
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineageOptions:
    run: str  # run name or directory
    root: str = "runs"


@dataclass
class LineageResult:
    lines: list = field(default_factory=list)
    flags: list = field(default_factory=list)  # distinct, in order


def lineage(opts: LineageOptions) -> LineageResult:
    from corral.store.lineage import lineage_tree

    lines, flags = lineage_tree(opts.run, opts.root)
    return LineageResult(list(lines), list(dict.fromkeys(flags)))
