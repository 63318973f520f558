"""The vLLM backend of the engine (GPU machines; `pip install corral[vllm]`)."""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.infer.engine import Generation, SamplingParams


class VLLMBackend:
    """Samples with vLLM (GPU; untested by the CPU suite). `model`: a path/hub id or a `vllm.LLM`.

    Log-probs must be raw (temperature 1) to match HFBackend: vLLM's default `logprobs_mode`,
    "raw_logprobs", gives that; pass it explicitly in llm_kwargs to pin it.
    """

    def __init__(self, model, **llm_kwargs):
        try:
            import vllm
        except ImportError:
            raise CorralError("VLLMBackend: vllm is not installed; `pip install vllm` on a GPU "
                              "machine, or use HFBackend.") from None
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **llm_kwargs) if isinstance(model, str) else model

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        sampling = self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1, max_tokens=params.max_new_tokens,
            stop=list(params.stop), seed=params.seed, logprobs=0,
        )
        requests = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        return [[_from_vllm(c, pi, si) for si, c in enumerate(out.outputs)]
                for pi, out in enumerate(outputs)]


def _from_vllm(completion, prompt_index: int, sample_index: int) -> Generation:
    if completion.finish_reason == "length":
        reason = "length"
    else:  # vLLM reports "stop" for both; stop_reason holds the stop string when one matched
        reason = "stop" if isinstance(completion.stop_reason, str) else "eos"
    token_ids = list(completion.token_ids)
    logprobs = [float(step[tok].logprob) for tok, step in zip(token_ids, completion.logprobs or [])]
    return Generation(text=completion.text, token_ids=token_ids, logprobs=logprobs,
                      finish_reason=reason, prompt_index=prompt_index, sample_index=sample_index)
