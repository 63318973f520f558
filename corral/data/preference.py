"""Preference and KTO records rendered into Examples: pairs whose both sides keep a target,
labelled rows, and pairs split into unpaired rows (chosen desirable, rejected not)."""
from __future__ import annotations

from corral.core.records import Completion, Feedback
from corral.data.batching import has_target
from corral.data.render import Example, render


def render_response(prompt, response, tokenizer, max_length=None, template=None,
                    source: str = "") -> Example:
    """One prompt + response as an Example whose targets are the response's tokens (and EOS)."""
    return render(Completion(prompt, response, source), tokenizer, mask="assistant",
                  max_length=max_length, template=template)


def render_pairs(records, tokenizer, max_length=None, template=None):
    """Preferences -> ([(chosen Example, rejected Example)], dropped): a pair is dropped when
    truncation leaves either side without a target token."""
    pairs, dropped = [], 0
    for r in records:
        pair = tuple(render_response(r.prompt, side, tokenizer, max_length, template, r.source)
                     for side in (r.chosen, r.rejected))
        if all(has_target(ex) for ex in pair):
            pairs.append(pair)
        else:
            dropped += 1
    return pairs, dropped


def render_feedback(records, tokenizer, max_length=None, template=None):
    """Feedback -> ([Example], [label], dropped)."""
    examples, labels, dropped = [], [], 0
    for r in records:
        ex = render_response(r.prompt, r.completion, tokenizer, max_length, template, r.source)
        if has_target(ex):
            examples.append(ex)
            labels.append(bool(r.label))
        else:
            dropped += 1
    return examples, labels, dropped


def split_pairs(preferences) -> list[Feedback]:
    """Paired data as unpaired KTO rows: chosen is desirable, rejected undesirable."""
    return [Feedback(p.prompt, side, label, p.source) for p in preferences
            for side, label in ((p.chosen, True), (p.rejected, False))]
