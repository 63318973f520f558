"""Data commands as library calls: `corral split`, `corral data inspect`, `corral lineage`.

    from corral.api.data import SplitOptions, split_data
    split_data(SplitOptions("data.jsonl", dev=0.1, unseen=0.1)).counts
"""
from corral.data.commands import SplitOptions, SplitResult, split_data
from corral.model.commands import InspectOptions, InspectResult, inspect_data
from corral.store.commands import LineageOptions, LineageResult, lineage

__all__ = ["InspectOptions", "InspectResult", "LineageOptions", "LineageResult", "SplitOptions",
           "SplitResult", "inspect_data", "lineage", "split_data"]
