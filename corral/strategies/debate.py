"""Multi-agent debate (Du et al., 2023): M agents answer, then for R-1 rounds each agent sees
the others' latest answers and answers again; the last round is settled by majority vote of
the extracted answers, or by a Scorer (a judge) when one is given.

The agents are samples of one model at temperature > 0. Round 1 is one conversation per
item with n = M (the agents share the prompt, so its prefill is counted once); later rounds
are M conversations per item, all items' in one batched call."""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.strategies.base import (
    Outcome,
    Strategy,
    best_index,
    item_conversation,
    majority_index,
    outcomes_of,
    vote_keys,
)

DEBATE_PROMPT = (
    "Other agents answered the same request:\n\n{others}\n\n"
    "Use their reasoning as additional advice: check it against yours, then give your updated "
    "answer to the original request, following its instructions.")


def debate_prompt(others: list[tuple[int, str]]) -> str:
    """The round-r message for one agent: every other agent's last answer, by number."""
    shown = "\n\n".join(f"Agent {j + 1}: {text.strip()}" for j, text in others)
    return DEBATE_PROMPT.format(others=shown)


class Debate(Strategy):
    """`agents` × `rounds`. Each agent's conversation in round r ≥ 2 is the request, its own
    previous answer, and the others' previous answers (not the whole history: a small
    model's context is short, and the last answers carry the debate's state)."""
    kind = "debate"

    def __init__(self, agents: int, rounds: int, scorer=None, spec: str = "", **kw):
        super().__init__(spec, **kw)
        self.agents, self.rounds, self.scorer = agents, rounds, scorer
        if agents < 2:
            raise CorralError(f"strategy {self.spec}: a debate needs at least 2 agents")
        if self.temperature <= 0:
            raise CorralError(f"strategy {self.spec}: debating agents sampled at temperature 0 "
                              "would all say the same; give a temperature above 0")

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        base = [item_conversation(it) for it in items]
        first = meter.chat(generator, list(range(len(items))), base, self.sampled(self.agents))
        answers = [[g.text for g in gens] for gens in first]
        traces = [[{"round": 1, "agent": j, "text": t} for j, t in enumerate(a)]
                  for a in answers]
        for r in range(2, self.rounds + 1):
            owners, conversations = [], []
            for i, last in enumerate(answers):
                for j in range(self.agents):
                    others = [(k, last[k]) for k in range(self.agents) if k != j]
                    owners.append(i)
                    conversations.append(base[i] + [
                        {"role": "assistant", "content": last[j]},
                        {"role": "user", "content": debate_prompt(others)}])
            gens = meter.chat(generator, owners, conversations, self.sampled(1))
            answers = [[gens[i * self.agents + j][0].text for j in range(self.agents)]
                       for i in range(len(items))]
            for i, texts in enumerate(answers):
                traces[i] += [{"round": r, "agent": j, "text": t} for j, t in enumerate(texts)]
        finals = self._settle(items, base, answers, grader, traces)
        return outcomes_of(meter, finals, traces)

    def _settle(self, items, base, answers, grader, traces) -> list[str]:
        flat = [t for texts in answers for t in texts]
        if self.scorer is not None:
            values = [float(v) for v in self.scorer.score(
                [base[i] for i, texts in enumerate(answers) for _ in texts], flat)]
            how = "scores"
        else:
            values = vote_keys([items[i] for i, texts in enumerate(answers) for _ in texts],
                               flat, grader)
            how = "votes"
        finals = []
        for i, texts in enumerate(answers):
            mine = values[i * self.agents:(i + 1) * self.agents]
            pick = best_index(mine) if self.scorer is not None else majority_index(mine)
            finals.append(texts[pick])
            traces[i].append({"step": "final", how: mine, "agent": pick})
        return finals
