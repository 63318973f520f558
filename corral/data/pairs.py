"""Old name of `corral.data.preference` (preference and KTO rows rendered into Examples),
kept so imports of `corral.data.pairs` keep working."""
from corral.data.preference import render_feedback, render_pairs, render_response, split_pairs

__all__ = ["render_feedback", "render_pairs", "render_response", "split_pairs"]
