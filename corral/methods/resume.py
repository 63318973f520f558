"""Resume means resume: `--resume RUN` continues RUN with the config it was saved with; a
changed hyper-parameter or data file (by content hash) is refused unless the user names it in
`run.allow_change` (`--allow-change KEY`), and what was allowed is recorded in the run's
`resumes.jsonl`. A run that does not exist is an error, not a fresh start."""
from __future__ import annotations

import json
from pathlib import Path

from corral.core.config import closest, read_yaml, to_dict
from corral.core.errors import CorralError
from corral.core.sections import data_files
from corral.store.runs import data_entry

# Keys that change how a run is watched, not what it computes: free to change on resume.
FREE = frozenset({"run.resume", "run.name", "run.root", "run.allow_change", "train.progress",
                  "train.report_to", "train.log_every", "train.eval_every", "train.save_every",
                  "train.keep_checkpoints"})
FREE_SECTIONS = ("eval.",)  # graded evaluation reads the model; it does not train it
DATA_KEYS = ("data.train", "data.validation")


def find_run(name: str, root: str = "runs") -> Path:
    """The saved run `name` (a name under `root`, or a run directory) that a resume continues."""
    for run in (Path(root) / name, Path(name).expanduser()):
        if (run / "config.yaml").is_file():
            return run
    runs = sorted(p.name for p in Path(root).iterdir()
                  if (p / "config.yaml").is_file()) if Path(root).is_dir() else []
    close = closest(name, runs)
    hint = f"did you mean '{close}'?" if close else \
        (f"runs there: {', '.join(runs[:10])}" if runs else "there are no runs there")
    raise CorralError(f"no run '{name}' under {root}/ to resume ({hint}); check the name, or "
                      "drop --resume to start a new run")


def saved_config(run: Path) -> dict:
    """The config a run was started (or last resumed) with, as saved in its config.yaml."""
    return read_yaml(str(run / "config.yaml"))


def check_resume(cfg) -> dict:
    """Compare `cfg` with the run it resumes; returns the allowed changes {key: [old, new]}."""
    run = find_run(cfg.run.name, cfg.run.root)
    old, new = _flat(saved_config(run)), _flat(to_dict(cfg))
    changes = {key: [old.get(key), new.get(key)] for key in sorted(set(old) | set(new))
               if key in old and not _same(old.get(key), new.get(key)) and not _free(key)}
    changes.update(_data_changes(run, cfg))
    allowed = set(cfg.run.allow_change)
    refused = {k: v for k, v in changes.items() if k.split("#")[0] not in allowed}
    if refused:
        listed = "; ".join(f"{_label(k) if k.count('#') > 1 else k.split('#')[0]} "
                           f"{_show(k, a)} -> {_show(k, b)}" for k, (a, b) in refused.items())
        keys = " ".join(f"--allow-change {k}" for k in dict.fromkeys(
            k.split("#")[0] for k in refused))
        raise CorralError(f"resuming run '{run}' would change {listed}; drop the change to "
                          f"continue as saved, or pass {keys} to continue with it (recorded in "
                          "the run's resumes.jsonl)")
    return changes


def record_resume(store, changes: dict) -> None:
    """One line per resume in the run's resumes.jsonl (`RunStore.append_resume`); a data
    file's contents change is keyed `data.train (contents)`."""
    store.append_resume({_label(k): v for k, v in changes.items()})


def _label(key: str) -> str:
    """`data.train (contents)`, or `data.train (contents of FILE)` for a mixture's file."""
    name, _, rest = key.partition("#")
    if not rest:
        return name
    path = rest.partition("#")[2]
    return f"{name} (contents of {path})" if path else f"{name} (contents)"


def _data_changes(run: Path, cfg) -> dict:
    """Data files with the same path as before but other contents (sha256 in lineage.json)."""
    try:
        saved = json.loads((run / "lineage.json").read_text()).get("data", [])
    except (OSError, ValueError):
        return {}
    by_path = {entry.get("path"): entry.get("sha256") for entry in saved if entry}
    changes = {}
    for key in DATA_KEYS:
        section, _, name = key.partition(".")
        value = getattr(getattr(cfg, section), name, "")
        mixed = isinstance(value, (list, tuple))  # a data.train mixture: every file
        for path in [f.path for f in data_files(value)] if mixed else [value]:
            before = by_path.get(str(path)) if path else None
            if before:
                now = data_entry(path).get("sha256")
                if now and now != before:
                    changes[f"{key}#sha256" + (f"#{path}" if mixed else "")] = [before, now]
    return changes


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _free(key: str) -> bool:
    return key in FREE or key.startswith(FREE_SECTIONS)


def _same(a, b) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _show(key: str, value) -> str:
    if "#" in key:
        return f"(contents sha256 {str(value)[:12]})"
    return repr(value)
