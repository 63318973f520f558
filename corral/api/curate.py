"""`corral curate` as a library call, re-exported from `corral.curate` (the command's options,
its function and result; `CurateOptions` is the pipeline's, with thresholds as numbers)."""
from corral.curate import CurateOptions, CurateResult, CurateRunOptions, curate_file, run

curate = run  # corral.api.curate.curate(opts) reads as the command

__all__ = ["CurateOptions", "CurateResult", "CurateRunOptions", "curate", "curate_file", "run"]
