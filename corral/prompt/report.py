"""What `corral prompt search` and `corral prompt show` print."""
from __future__ import annotations

import json


def format_search(result) -> str:
    """The candidates table (winner first), the ordering spread, the unseen comparison."""
    head = f"{'candidate':<34} {'items':>5} {'dev score':>15} {'calls':>6} {'prompt tok':>10}" \
           f"  out in round"
    lines = [f"prompt search on {result.task}: {len(result.standings)} candidates, "
             f"{result.n_dev} dev items", head]
    for row in result.standings:
        left = "winner" if row["eliminated_in_round"] is None else str(row["eliminated_in_round"])
        lines.append(f"{row['name'][:34]:<34} {row['items']:>5} "
                     f"{row['score']:>7.3f} ± {row['stderr']:.3f} {row['calls']:>6} "
                     f"{row['prompt_tokens']:>10.0f}  {left}")
    lines += [f"skipped {note}" for note in result.skipped]
    spread = result.spread
    if spread:
        lines.append(f"ordering spread of the winner's demonstrations: {spread['orderings']} "
                     f"orders on {spread['items']} dev items, scores {spread['min']:.3f} to "
                     f"{spread['max']:.3f} (spread {spread['spread']:.3f})")
    u = result.unseen
    if u:
        lines.append(f"unseen ({u['items']} items): winner {u['winner']['score']:.3f} ± "
                     f"{u['winner']['stderr']:.3f}, zero-shot {u['zero_shot']['score']:.3f} ± "
                     f"{u['zero_shot']['stderr']:.3f}, paired difference "
                     f"{u['paired']['diff']:+.3f} ± {u['paired']['stderr']:.3f}")
    else:
        lines.append("unseen: not graded (give --unseen FILE for a FILE task)")
    c = result.calls
    lines.append(f"calls: search {c['search']} + bootstrap {c['bootstrap']} (budget "
                 f"{c['budget']}), spread {c['spread']}, unseen {c['unseen']}; "
                 f"{result.wall_s:.0f} s")
    lines.append(f"program: {result.program_path}  (use it: corral eval --program "
                 f"{result.program_path} ...)")
    return "\n".join(lines)


def show_program(path, task: str = "", data: str = "", grader: str = "", split: str = "dev",
                 limit: int = 1) -> str:
    """The program's settings and demonstrations; with a task, the conversation its first
    items would be sent."""
    from corral.tasks.prompt_file import load_program, made_by

    program = load_program(path)
    lines = [f"{path}: layout {program.layout}, select {program.select}"
             + (f" (k={program.k} of {len(program.pool)})" if program.select != "fixed"
                else f", {len(program.few_shot)} demonstrations")
             + (f", order {program.order}" if program.order != "given" else "")]
    if program.system_prompt:
        lines.append(f"system: {program.system_prompt}")
    if program.template:
        lines.append(f"template: {program.template}")
    info = made_by(path)
    if info.get("dev"):
        lines.append(f"chosen on dev: {info['dev']['score']:.3f} ± {info['dev']['stderr']:.3f}"
                     f" over {info['dev']['items']} items ({info['dev']['name']})")
    if task:
        from corral.tasks import get_task

        t = get_task(task, split=split, data=data, grader=grader, limit=limit)
        t.use_program(str(path))
        for item, conv in zip(t.items, t.conversations()):
            lines.append(f"--- {item.source}")
            lines += [f"[{m['role']}] {m['content']}" for m in conv]
    else:
        for user, assistant, *_ in program.few_shot:
            lines.append(json.dumps({"input": user, "output": assistant}, ensure_ascii=False))
    return "\n".join(lines)
