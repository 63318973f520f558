"""`ifeval-like`: procedural writing prompts carrying 1-3 verifiable instructions."""
from __future__ import annotations

import random

TOPICS = ["the ocean", "a rainy day", "learning to cook", "city bicycles", "a library",
          "the moon", "winter mornings", "a small garden", "trains", "a favourite teacher",
          "mountain hiking", "coffee", "recycling", "a lost key", "board games", "the desert",
          "music lessons", "a birthday party", "honey bees", "a long flight"]
FORMS = ["Write a short note about {t}.", "Describe {t}.", "Write a brief story about {t}.",
         "Explain why people like {t}.", "Write a short poem about {t}."]
SPLIT_SEEDS = {"train": 0, "dev": 1, "unseen": 2}


def build(split: str = "dev", data: str = "", seed: int = 0, few_shot: int = 0, size: int = 100):
    from corral.core.records import Item, Message
    from corral.graders.ifeval import describe, sample_instructions
    from corral.graders.rules import make_rule_grader
    from corral.tasks import Task

    if split not in SPLIT_SEEDS:
        raise ValueError(f"ifeval-like has splits {', '.join(SPLIT_SEEDS)}, not '{split}'")
    # Disjoint splits: each split draws from its own seeded stream and its own topic half.
    rng = random.Random(1000 * SPLIT_SEEDS[split] + seed)
    topics = TOPICS if split == "train" else TOPICS[SPLIT_SEEDS[split] - 1::2]
    items = []
    for index in range(size):
        instructions = sample_instructions(rng, 3)
        prompt = rng.choice(FORMS).format(t=rng.choice(topics)) + " " + describe(instructions)
        items.append(Item(messages=(Message("user", prompt),),
                          fields={"instructions": instructions},
                          source=f"ifeval-like:{split}:{index + 1}"))
    return Task(name="ifeval-like", items=items, grader=make_rule_grader("ifeval"))
