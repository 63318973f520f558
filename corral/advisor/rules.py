"""The advice as a pure function of the measurements: signals -> ranked recommendations.

    plan = recommend([signals_a, signals_b], data, Context(task="arithmetic"))
    plan.ranking[0].model, plan.recommendations[0].rung, plan.avoid

Each rung's `gain` is the most dev score (greedy pass@1, points) it can add, from the numbers:
measured where the measurement is the rung itself (a prompt's few-shot score, majority
voting's maj@k), otherwise a ceiling (RL and rejection sampling: pass@k, what sampling already
finds; SFT and preference tuning: all the way to 1, scaled by how much data there is; a judge's
pick: its recalls applied to each item's samples). Recommendations are ranked by gain, ties
cheapest first; `avoid` says which rungs cannot help here and why. docs/advise.md has the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from corral.advisor import lines as L
from corral.advisor.signals import DataSignals, ModelSignals, Share, paired

CAPABLE = 0.9  # greedy dev score from which the model is used as it is, first
ENOUGH_SFT = 100  # demonstrations for SFT's full ceiling (fewer scale it down)
ENOUGH_PAIRS = 100
ENOUGH_THUMBS = 200  # a thumbs row carries half a pair's signal
FULL_BYTES, LORA_BYTES, ACTIVATIONS = 16, 4, 1.2  # AdamW full fine-tuning; LoRA; + 20 %
ORDER = ("as-is", "prompt", "majority", "judge", "sft", "rft", "rejection", "dpo", "kto",
         "rlaif", "distill", "collect")  # cheapest first, for equal gains
TRAINING = {"sft", "rft", "rejection", "dpo", "kto", "rlaif", "distill"}
STUDENT = "smollm2-135m-instruct"  # trained on an endpoint's answers when no local model is given


@dataclass
class Recommendation:
    rung: str
    gain: float  # dev score points it can add (see the module docstring)
    measured: bool  # the gain is a measurement of the rung itself, not a ceiling
    why: str  # the measurements behind it, quoted
    commands: list = field(default_factory=list)


@dataclass
class ComputeAdvice:
    """mode: full | lora | none (neither fits) | endpoint (nothing local to train)."""
    mode: str
    override: str
    why: str
    params: int | None = None
    full_gb: float | None = None
    lora_gb: float | None = None


@dataclass
class Plan:
    ranking: list  # ModelSignals, best dev score first
    choice: str  # why the first one
    compute: ComputeAdvice
    recommendations: list
    avoid: list
    train_model: str  # what the training commands start from


def rank(models: list[ModelSignals]) -> list[ModelSignals]:
    """Best greedy dev score first, then pass@k; the order given breaks ties."""
    return sorted(models, key=lambda m: (-m.greedy.value, -m.pass_at_k.value))


def _choice(ranking: list[ModelSignals]) -> str:
    best = ranking[0]
    if len(ranking) == 1:
        return f"{best.model}: the only model given"
    runner = ranking[1]
    diff = paired(runner.greedy_items, best.greedy_items)
    noise = diff.stderr is not None and diff.value <= 2 * diff.stderr
    size = "" if best.params is None or runner.params is None or best.params >= runner.params \
        else f", though it is the smaller model ({fmt_params(best.params)} vs " \
             f"{fmt_params(runner.params)})"
    return (f"{best.model} scores {best.greedy} on dev ({best.best_prompt}) vs {runner.model} "
            f"{runner.greedy}: paired difference +{diff.value:.2f}"
            + (f" ± {diff.stderr:.2f}" if diff.stderr is not None else "")
            + f" over {best.items} items{size}"
            + ("; within 2 stderr: measure more items (--limit) before choosing" if noise else ""))


def fmt_params(count: int | None) -> str:
    if count is None:
        return "unknown"
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.0f}K"


def compute_advice(params: int | None, memory_gb: float, source: str) -> ComputeAdvice:
    """Full fine-tuning when ~16 bytes/param (+20 % activations) fit, else LoRA at ~4."""
    if params is None:
        return ComputeAdvice("endpoint", "", "an endpoint: its weights cannot be trained "
                             "here; train a local model on its answers (distillation)")
    full = params * FULL_BYTES * ACTIVATIONS / 1e9
    lora = params * LORA_BYTES * ACTIVATIONS / 1e9
    have = f"{memory_gb:.1f} GB ({source}) for {fmt_params(params)} parameters"
    if full <= memory_gb:
        return ComputeAdvice("full", "lora.enabled=false", f"{have}: full fine-tuning needs "
                             f"≈ {full:.1f} GB ({FULL_BYTES} B/param + activations) and fits; "
                             "LoRA (the default) is cheaper", params, full, lora)
    if lora <= memory_gb:
        return ComputeAdvice("lora", "lora.r=16", f"{have}: full fine-tuning needs ≈ "
                             f"{full:.1f} GB, LoRA ≈ {lora:.1f} GB: train LoRA adapters",
                             params, full, lora)
    return ComputeAdvice("none", "", f"{have}: even LoRA needs ≈ {lora:.1f} GB; use a smaller "
                         "model, a machine with more memory, or prompting and "
                         "inference-time compute only", params, full, lora)


def judged_pick(passes: list, n: int, pass_recall: float, fail_recall: float) -> float:
    """Expected score of picking, per item, an answer the judge passes among n samples of
    which c pass the grader: c·r / (c·r + (n−c)·(1−s)), r and s the judge's recalls."""
    total = 0.0
    for c in passes:
        right, wrong = c * pass_recall, (n - c) * (1 - fail_recall)
        total += right / (right + wrong) if right + wrong > 0 else c / n
    return total / len(passes)


def _v(share: dict | None) -> float | None:
    return None if not share else share.get("value")


def fmt_share(share: dict | None) -> str:
    if not share or share.get("value") is None:
        return "n/a"
    se = f" ± {share['stderr']:.2f}" if share.get("stderr") is not None else ""
    return f"{share['value']:.2f}{se} (n={share['n']})"


# ---------------------------------------------------------------- inference-time rungs
def _prompt(m: ModelSignals, ctx: L.Context) -> Recommendation | None:
    if m.few_shot is None:
        return None
    diff = paired(m.zero_shot, m.few_shot)
    se = f" ± {diff.stderr:.2f}" if diff.stderr is not None else ""
    facts = (f"{m.few_shot_k}-shot greedy {Share.of(m.few_shot)} vs zero-shot "
             f"{Share.of(m.zero_shot)} on {m.items} dev items (paired {diff.value:+.2f}{se})")
    if diff.value <= 0:
        return Recommendation("prompt", 0.0, True, f"{facts}: worked examples do not help")
    noise = "; within 2 stderr, so measure more items" if diff.stderr is not None and \
        diff.value <= 2 * diff.stderr else ""
    return Recommendation("prompt", diff.value, True, f"{facts}: worked examples help{noise}; "
                          "search which examples, how many and in what order",
                          [L.prompt_search(m.model, ctx), L.eval_few_shot(m.model, ctx)])


def _majority(m: ModelSignals, ctx: L.Context) -> Recommendation | None:
    pk, g = m.pass_at_k, m.zero_greedy  # samples come from the zero-shot prompt
    if pk.value == 0:
        return Recommendation("majority", 0.0, True, f"pass@{m.n} is 0.00 over {m.items} "
                              f"items at temperature {m.temperature:g}: no sample is ever "
                              "right, so no vote or best-of-n pick among samples can be")
    maj = m.maj_at_k
    if maj is None:
        return None
    facts = f"maj@{m.n} {maj} vs zero-shot greedy {g} (pass@{m.n} {pk})"
    if maj.value <= g.value:
        return Recommendation("majority", 0.0, True, f"{facts}: the right answer is rarely "
                              "the most common one, so voting does not help")
    return Recommendation("majority", maj.value - g.value, True, f"{facts}: voting over "
                          f"{m.n} samples adds {maj.value - g.value:+.2f} at {m.n}x the "
                          "compute per question",
                          [L.eval_strategies(m.model, ctx, f"greedy,majority:{m.n}")])


def _judge(m: ModelSignals, ctx: L.Context) -> Recommendation | None:
    v = m.verification
    if v is None or v["better"] is None:
        return None
    facts = (f"as a judge of its own answers its balanced verification accuracy is "
             f"{v['balanced_accuracy']:.2f} (right answers passed "
             f"{fmt_share(v['pass_recall'])}, wrong failed {fmt_share(v['fail_recall'])}) "
             f"vs generation accuracy {m.pass_at_1}")
    if not v["better"]:
        return Recommendation("judge", 0.0, False, f"{facts}: not better by 2 stderr; "
                              "best-of-n by its own verdicts, self-refine and RLAIF labels "
                              "would rest on verdicts no better than its answers: stay with "
                              "the grader or human labels")
    pick = judged_pick(m.passes, m.n, _v(v["pass_recall"]), _v(v["fail_recall"]))
    return Recommendation("judge", pick - m.zero_greedy.value, False, f"{facts}: it verifies "
                          f"better than it generates; picking among {m.n} samples by its own "
                          f"verdict should score ≈ {pick:.2f} vs zero-shot greedy "
                          f"{m.zero_greedy}",
                          [L.eval_strategies(m.model, ctx, f"greedy,best-of-n:{m.n}:judge,"
                                             "refine:1")])


# ---------------------------------------------------------------- training rungs
def _rl(m: ModelSignals, data: DataSignals, ctx: L.Context) -> list[Recommendation]:
    if not data.train_items:
        return []
    pk, g = m.pass_at_k, m.zero_greedy  # RL samples the task's zero-shot prompts
    if pk.value == 0:
        why = (f"pass@{m.n} is 0.00 over {m.items} dev items at temperature "
               f"{m.temperature:g}: RL learns only from prompts where some samples pass, and "
               "rejection sampling keeps only passing ones; teach the format first (SFT)")
        return [Recommendation("rft", 0.0, False, why), Recommendation("rejection", 0.0, False,
                                                                       why)]
    gain = pk.value - g.value
    facts = (f"pass@{m.n} {pk} vs zero-shot greedy {g}: {m.mixed} of the items have samples "
             "that "
             f"disagree, what RL learns from; {data.train_items} gradable train items")
    if gain <= 0:
        why = f"{facts}; greedy already finds what sampling finds: no headroom"
        return [Recommendation("rft", 0.0, False, why),
                Recommendation("rejection", 0.0, False, why)]
    found = round(data.train_items * pk.value)
    return [Recommendation("rft", gain, False, f"{facts}: RL turns pass@{m.n} into pass@1, "
                           f"ceiling {gain:+.2f}", [L.rft(m.model, ctx)]),
            Recommendation("rejection", gain, False, f"pass@{m.n} {pk} vs zero-shot greedy {g}: "
                           f"about "
                           f"{found} of {data.train_items} train items should yield a sample "
                           "that passes the grader, to fine-tune on (offline and one round: "
                           f"cheaper than RFT, the same ceiling {gain:+.2f})",
                           L.rejection(m.model, ctx))]


def _scaled(count: int, enough: int, g: Share) -> tuple[float, str]:
    """(1 − greedy, scaled down below `enough` rows) and how it was reached, in words."""
    gain = (1 - g.value) * min(1.0, count / enough)
    scale = f" × {count}/{enough} rows" if count < enough else ""
    return gain, f"ceiling 1 − greedy{scale}: {gain:+.2f}"


def _sft(m: ModelSignals, data: DataSignals, ctx: L.Context) -> Recommendation | None:
    user = data.sft >= data.solutions and data.sft > 0
    count = data.sft if user else data.solutions
    if not count:
        return None
    source = f"{count} rows in {data.sft_path}" if user else \
        f"{count} reference solutions of the task's train split"
    absent = f"; pass@{m.n} is {m.pass_at_k}, so demonstrations are the way in" \
        if m.pass_at_k.value == 0 else ""
    gain, how = _scaled(count, ENOUGH_SFT, m.greedy)
    return Recommendation("sft", gain, False, f"{source}; greedy dev {m.greedy}: SFT can teach "
                          f"what sampling never finds ({how}){absent}",
                          [L.sft(m.model, ctx, data.sft_path if user else "")])


def _preference(m: ModelSignals, data: DataSignals, ctx: L.Context) -> list[Recommendation]:
    out = []
    if data.pairs:
        gain, how = _scaled(data.pairs, ENOUGH_PAIRS, m.greedy)
        out.append(Recommendation("dpo", gain, False, f"{data.pairs} preference pairs in "
                                  f"{data.pairs_path}; greedy dev {m.greedy} ({how})",
                                  [L.preference("dpo", m.model, ctx, data.pairs_path)]))
    if data.thumbs:
        counts = f"{data.thumbs_up} thumbs up and {data.thumbs_down} down in {data.thumbs_path}"
        if not (data.thumbs_up and data.thumbs_down):
            out.append(Recommendation("kto", 0.0, False, f"{counts}: KTO needs both kinds"))
        else:
            gain, how = _scaled(data.thumbs, ENOUGH_THUMBS, m.greedy)
            out.append(Recommendation("kto", gain, False, f"{counts} (unpaired labels); greedy "
                                      f"dev {m.greedy} ({how})",
                                      [L.preference("kto", m.model, ctx, data.thumbs_path)]))
    return out


def _rlaif(m: ModelSignals, data: DataSignals, ctx: L.Context) -> Recommendation | None:
    v = m.verification
    if not (v and v["better"] and data.train_items and m.pass_at_k.value > 0):
        return None
    agree = _v(v["agreement"]) or v["balanced_accuracy"]
    gain = max(0.0, m.pass_at_k.value - m.greedy.value) * max(0.0, 2 * agree - 1)
    return Recommendation("rlaif", gain, False, f"the model picks the right one of a right and "
                          f"a wrong answer {agree:.2f} of the time (both orders); labelling "
                          "pairs of its own answers for DPO: ceiling pass@k − greedy, × "
                          f"(2·agreement − 1) = {gain:+.2f}", L.rlaif(m.model, ctx))


def _distill(ranking, train: ModelSignals | None, ctx: L.Context) -> Recommendation | None:
    best = ranking[0]
    if best.params is not None:
        return None
    student = train.model if train else STUDENT
    gain = best.greedy.value - (train.greedy.value if train else 0.0)
    if ctx.file_task and not ctx.train_path:
        return Recommendation("distill", 0.0, False, f"the best model, {best.model}, is an "
                              f"endpoint; distilling it into {student} needs train prompts: "
                              "give the task's train items (--train)")
    return Recommendation("distill", max(gain, 0.0), False, f"the best model, {best.model} "
                          f"(dev {best.greedy}), is an endpoint: train {student} on its "
                          "answers that pass the grader"
                          + (f" (dev {train.greedy} now)" if train else " (not measured)"),
                          L.distill(best.model, student, ctx))


def recommend(models: list[ModelSignals], data: DataSignals, ctx: L.Context) -> Plan:
    """The plan: models ranked, the fine-tuning mode, recommendations ranked, and the rungs
    that cannot help (with why)."""
    ranking = rank(models)
    best = ranking[0]
    train = next((m for m in ranking if m.params is not None), None)
    compute = compute_advice(train.params if train else None, data.memory_gb,
                             data.memory_source)
    tctx = replace(ctx, override=compute.override)
    found = [_prompt(best, ctx), _majority(best, ctx), _judge(best, ctx)]
    if train is not None:
        found += [_sft(train, data, tctx), *_rl(train, data, tctx),
                  *_preference(train, data, tctx), _rlaif(train, data, tctx)]
    found.append(_distill(ranking, train, tctx))
    found = [r for r in found if r is not None]
    if compute.mode == "none":
        found = [r if r.rung not in TRAINING else replace(r, gain=0.0, commands=[],
                                                          why=f"{r.why}; {compute.why}")
                 for r in found]
    do = [r for r in found if r.gain > 0]
    avoid = [r for r in found if r.gain <= 0]
    do.sort(key=lambda r: (-r.gain, ORDER.index(r.rung)))
    if best.greedy.value >= CAPABLE:
        shots = best.few_shot_k if best.best_prompt == "few-shot" else 0
        prompt = f"with {shots} worked examples" if shots else "zero-shot"
        do.insert(0, Recommendation("as-is", 0.0, True, f"greedy dev {best.greedy} {prompt} ≥ "
                                    f"{CAPABLE}: the model already holds the capability; grade "
                                    "it once on the sealed unseen split",
                                    L.unseen(best.model, replace(ctx, few_shot=shots))))
    if not do:
        do.append(Recommendation("collect", 0.0, False, "nothing measured here would raise "
                                 f"the dev score (greedy {best.greedy}, pass@{best.n} "
                                 f"{best.pass_at_k}): give demonstrations (--sft), preference "
                                 "pairs (--pairs), thumbs (--thumbs) or train items the grader "
                                 "scores (--train), or measure a stronger model (--model)"))
    return Plan(ranking, _choice(ranking), compute, do, avoid,
                train.model if train else STUDENT)
