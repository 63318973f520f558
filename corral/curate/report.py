"""What each curation step returns: the rows it kept and a finding for each row it judged.

    result = exact_dedup(rows)
    result.kept, result.removed       # rows kept (input order); findings of the rows dropped
    [f.as_dict() for f in result.findings]   # one report line each
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Finding:
    """One row judged by one step: why, against what, and the number behind it.

    match: the row it duplicates (`file:line`) or the test item it overlaps; score: Jaccard,
    cosine, covered fraction or quality score; dropped: False for rows kept but worth a look
    (a partial test overlap below the threshold)."""
    step: str
    source: str
    reason: str
    match: str = ""
    score: float | None = None
    dropped: bool = True
    kept_as: str = ""  # near/semantic dedup: the cluster's kept row, when `match` is another

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v not in ("", None)}
        out["dropped"] = bool(self.dropped)
        if self.score is not None:
            out["score"] = round(float(self.score), 6)
        return out


@dataclass
class StepResult:
    """kept: the rows that passed, in input order; params: what the manifest records."""
    step: str
    kept: list
    findings: list[Finding] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def removed(self) -> list[Finding]:
        return [f for f in self.findings if f.dropped]

    def summary(self) -> dict:
        """The manifest entry of this step."""
        out = {"step": self.step, "removed": len(self.removed), "kept": len(self.kept),
               "params": self.params}
        if self.notes:
            out["notes"] = self.notes
        return out
