"""Policy-gradient RL (`corral rft | grpo`): GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++ as
presets of one objective, trained on rollouts from the live policy, scored by graders.

Where the parts live: config and presets `methods/rl_config.py`; rollouts `train/rollout.py`;
advantages `train/advantages.py`; the loss `objectives/policy_gradient.py`; graders
`graders/`. This module wires them: grader, prompts, signal check, learning curve.

    store = run_rft(load_rl_config(None, ["data.task=arithmetic", "rl.n=8"]))
"""
from __future__ import annotations

import json
from functools import partial

from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.graders.cached import CachedGrader
from corral.graders.load import load_grader
from corral.graders.weighted import WeightedGraders
from corral.methods.rl_config import RLConfig, RLSection
from corral.methods.runner import Built, Method, Setup, run
from corral.objectives.policy_gradient import PolicyGradient
from corral.store.runs import RunStore
from corral.train.advantages import ESTIMATORS
from corral.train.loop import plan
from corral.train.rollout import RolloutConfig, RolloutSource


def load_rl_config(path: str | None = None, overrides=(), preset: str = "") -> RLConfig:
    """Defaults <- preset <- YAML file <- overrides: a preset only fills keys not given."""
    return load_config(RLConfig, path, [*([f"rl.preset={preset}"] if preset else []),
                                        *overrides])


JUDGE_TYPES = ("score_model", "label_model", "pal_judge")  # graders that ask a model: worth a cache


def rl_grader(rl: RLSection, task_grader=None, root: str = "runs"):
    """rl.grader (or rl.reward_model, or the task's grader), plus any weighted rl.graders."""
    spec = rl.grader or (json.dumps({"type": "reward_model", "model": rl.reward_model})
                         if rl.reward_model else "")
    base = load_grader(spec, root=root) if spec else task_grader
    if base is None:
        raise CorralError("no grader: set rl.grader=GRADER.json (or a rule name such as "
                          "numeric), or use data.task=NAME")
    parts = [(base, 1.0)]
    for entry in rl.graders:
        weight, sep, spec = str(entry).partition(":")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not sep or value is None or not spec:
            raise CorralError(f"rl.graders entry {entry!r} must look like WEIGHT:SPEC, "
                              "e.g. 0.2:format.json")
        parts.append((load_grader(spec, root=root), value))
    grader = base if len(parts) == 1 else WeightedGraders(parts)
    judged = any(getattr(g, "type", "") in JUDGE_TYPES for g, _ in parts)
    if rl.reward_cache or rl.max_reward_calls or judged:
        grader = CachedGrader(grader, rl.reward_cache, rl.max_reward_calls)
    return grader


def objective_for(cfg: RLConfig) -> PolicyGradient:
    rl = cfg.rl
    return PolicyGradient(rl.clip_low, rl.clip_high, rl.aggregation,
                          rl.max_len or rl.max_new_tokens, rl.kl_coef, rl.kl_kind,
                          rl.kl_in == "loss")


def rollout_config(cfg: RLConfig) -> RolloutConfig:
    """What the rollouts read of the config: rl.* keys of the same names."""
    return RolloutConfig.of(cfg.rl)


def estimator_for(cfg: RLConfig):
    """The advantage estimator rl.advantage names, with its knobs (GAE's live in ppo.*)."""
    options = getattr(cfg, "ppo", None) if cfg.rl.advantage == "gae" else cfg.rl
    return partial(ESTIMATORS[cfg.rl.advantage], n=cfg.rl.n, options=options)


def read(cfg: RLConfig):
    train, dev, unseen, task_grader = load_items(cfg)
    return train, dev, unseen, rl_grader(cfg.rl, task_grader, cfg.run.root)


def build(cfg: RLConfig, setup: Setup, objective=None) -> Built:
    train_items, dev, unseen, grader = setup.data
    policy, rl = setup.policy, cfg.rl
    if rl.kl_coef > 0 and not policy.is_lora:
        policy.prepare_reference()  # full fine-tuning: freeze a copy before any update
    holder = {}  # the store, once the run is open: rollouts log their samples into it
    source = RolloutSource(policy, train_items, grader, rollout_config(cfg),
                           cfg.train.batch_tokens, cfg.train.seed, template=setup.template,
                           max_prompt_length=cfg.data.max_prompt_length,
                           estimator=estimator_for(cfg),
                           on_rollout=lambda r, trajs, stats: _log_samples(holder["store"], r,
                                                                           trajs))
    numbers = {"prompts": len(train_items), "dev": len(dev), "unseen": len(unseen),
               "preset": rl.preset, "n": rl.n, "advantage": rl.advantage,
               "aggregation": rl.aggregation}

    def before_fit(store, log) -> None:
        holder["store"] = store
        if rl.signal_check in ("off", "no") or cfg.run.resume:
            return
        stats = signal_check(source, rl.signal_check_prompts, cfg.train.seed)
        log(f"signal check: {stats['groups']} prompts x {rl.n}: mean reward "
            f"{stats['reward']:.3f}, groups without signal {stats['zero_var_frac']:.0%}")
        judge_signal(stats, rl.signal_check, log)
        numbers["signal_zero_var_frac"] = stats["zero_var_frac"]

    total = plan(cfg.train, source)["total_steps"]
    return Built(objective or objective_for(cfg), source, numbers=numbers,
                 evaluator=make_evaluator(cfg, grader, dev, unseen, total, setup.template),
                 before_fit=before_fit, eval_before=rl.eval_before)


def _report_curve(store, log) -> None:
    for row in learning_curve(store):
        log("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items()))


def _method(name: str, summary: str, report=None) -> Method:
    return Method(name, RLConfig, build, read, summary, fresh_adapter=True, report=report,
                  reads_task=True,
                  data_hint="set data.task=NAME (e.g. arithmetic) or data.train=FILE.jsonl "
                  "(OpenAI RFT format)", doc="docs/rl.md")


GRPO = _method("grpo", "policy-gradient RL; rl.preset=grpo|dr_grpo|dapo|rloo|reinforce_pp")
RFT = _method("rft", "reinforcement fine-tuning on graded prompts (OpenAI RFT data or a "
              "built-in task)", report=_report_curve)
METHODS = [RFT, GRPO]


def run_grpo(cfg: RLConfig, policy=None, log=print) -> RunStore:
    return run(GRPO, cfg, policy, log)


def run_rft(cfg: RLConfig, policy=None, log=print) -> RunStore:
    """RL fine-tuning on tiny graded data; prints the learning curve and the unseen score."""
    return run(RFT, cfg, policy, log)


def signal_check(source, limit: int, seed: int = 0) -> dict:
    """Sample up to `limit` training prompts n times each; how many groups could teach."""
    from corral.train.rollout import group_stats

    indices = list(range(min(limit, len(source.items))))
    trajs = source.sample(indices, seed=seed + 123_457)
    stats = group_stats(trajs, source.rl.n)
    rewards = [t.score for t in trajs]
    stats["groups"] = len(indices)
    stats["all_same"] = ("pass@k = 0 everywhere: too hard" if max(rewards) <= 0 else
                         "pass@k = 1 everywhere: too easy" if min(rewards) >= 1 else
                         "the same reward within each prompt")
    return stats


def judge_signal(stats: dict, mode: str, log=print) -> None:
    """Refuse (or warn) when every group has identical rewards: nothing to learn from."""
    if mode in ("off", "no") or stats["zero_var_frac"] < 1.0:
        return
    message = (f"signal check: all {stats['groups']} sampled groups have identical rewards "
               f"({stats['all_same']}; mean reward {stats['reward']:.3g}), so every advantage "
               "is 0 and RL has nothing to learn from; use SFT on demonstrations, easier data, "
               "a softer grader (partial credit), or more samples (rl.n), "
               "or set rl.signal_check=warn to train anyway")
    if mode == "stop":
        raise CorralError(message)
    log("warning: " + message)


def _with_program(path: str, items: list, name: str) -> list:
    """Items rendered through the prompt program at PATH (`rl.program`), checked as a task's."""
    from corral.tasks import Task

    return Task(name, items, grader=None).use_program(path).prompt_items() if items else []


def load_items(cfg: RLConfig):
    """(train, dev, unseen items, task grader or None) from data.task or data.* files."""
    from corral.data.readers import load_items as read
    from corral.data.splits import refuse_unseen
    from corral.tasks import get_task

    d = cfg.data
    if d.task:
        tasks = {s: get_task(d.task, split=s, data=d.task_data, seed=cfg.train.seed)
                 for s in ("train", "dev", "unseen")}
        for task in tasks.values() if cfg.rl.program else ():
            task.use_program(cfg.rl.program)
        train, dev, unseen = (tasks[s].prompt_items() for s in ("train", "dev", "unseen"))
        held = {item.messages for item in dev + unseen}  # one data file for all splits:
        train = [item for item in train if item.messages not in held]  # never train on them
        if not train:
            raise CorralError(f"data.task={d.task}: every training prompt is also a dev or "
                              "unseen prompt; point data.task_data at the training file")
        grader = tasks["train"].grader
    elif d.train:
        refuse_unseen(d.train, d.unseen)
        train = read(d.train, d.max_errors)
        dev = read(d.validation, d.max_errors) if d.validation else []
        unseen = read(d.unseen, d.max_errors) if d.unseen else []
        grader = None
        if cfg.rl.program:
            train, dev, unseen = (_with_program(cfg.rl.program, items, d.task or d.train)
                                  for items in (train, dev, unseen))
    else:
        raise CorralError("no training prompts: set data.task=NAME (e.g. arithmetic) or "
                          "data.train=FILE.jsonl (OpenAI RFT format)")
    limit = cfg.eval.limit or None
    return train[:d.limit or None], dev[:limit], unseen[:limit], grader


def make_evaluator(cfg: RLConfig, grader, dev, unseen, total_steps: int, template=None):
    """dev/pass@k every train.eval_every steps; the unseen split once, at the last step.

    The scoring is eval's `policy_scorer` (what `task_evaluator` uses) over RL's own items and
    grader (rl.grader, with its cache and call budget); RL's part is which items when, the
    rollouts' decode batch, and eval.n > 1 at eval.temperature=0 sampling at rl.temperature."""
    from corral.eval.evaluate import policy_scorer
    from corral.infer.engine import SamplingParams

    e = cfg.eval
    temperature = e.temperature if e.n == 1 or e.temperature > 0 else cfg.rl.temperature
    params = SamplingParams(max_new_tokens=e.max_new_tokens, n=e.n, temperature=temperature,
                            seed=0)
    ks = tuple(int(k) for k in e.k if int(k) <= e.n) or (1,)

    def split_scorer(items, split):
        score = policy_scorer(items, grader, params, ks, template=template,
                              batch_size=cfg.rl.gen_batch_size)
        return lambda policy: {f"{split}/{k}": v for k, v in score(policy).items()
                               if not k.endswith("_stderr") and k not in ("n_items",
                                                                          "n_samples")}
    score_dev = split_scorer(dev, "dev") if dev else None
    score_unseen = split_scorer(unseen, "unseen") if unseen else None

    def run(policy, step) -> dict:
        out = score_dev(policy) if score_dev else {}
        if score_unseen and step in (0, total_steps):
            out.update(score_unseen(policy))
        return out
    return run if dev or unseen else None


def learning_curve(store: RunStore) -> list[dict]:
    """Rows (step, train reward, dev/unseen scores) from the run's metrics."""
    keep = ("step", "reward", "zero_var_frac")
    return [{k: v for k, v in row.items() if k in keep or k.startswith(("eval/dev/",
                                                                         "eval/unseen/"))}
            for row in store.read_metrics()]


def _log_samples(store: RunStore, r: int, trajs) -> None:
    """The first group of every rollout into samples.jsonl, to see what is rewarded."""
    group = [t for t in trajs if t.group == 0]
    store.append_samples([{"rollout": r, "prompt": t.prompt_index, "output": t.text,
                           "score": t.score, "advantage": (t.advantages or [0.0])[0],
                           "finish_reason": t.finish_reason} for t in group])
