"""Prompting as a measured rung: prompt programs (system prompt, instruction template, chosen
demonstrations; rendered by the one renderer, `corral.tasks.prompt.PromptProgram`) searched
on the dev split under a budget of model calls and graded once on the sealed unseen split.

- `pool`: the demonstrations a program may show (the train split only; bootstrapped ones are
  the model's own grader-passed answers on train items, as DSPy's BootstrapFewShot)
- `candidates`: the programs a search tries (k × selection × layout × order × system ×
  template)
- `search`: successive halving over the candidates, every score kept in a resumable job;
  the spread across orderings of the winner's demonstrations (Lu et al. 2022)
- `commands`: `corral prompt search` as a library call (`PromptSearchOptions`)
"""
