"""The vLLM backend of the engine (GPU machines; `pip install 'corral[vllm]'`), built by
`engine_for(policy, backend="vllm")` or directly as `Engine(VLLMBackend(path), tokenizer)`."""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.infer.engine import Generation, SamplingParams


class VLLMBackend:
    """Samples with vLLM (GPU; untested by the CPU suite). `model`: a path/hub id or a `vllm.LLM`.

    Log-probs must be raw (temperature 1) to match HFBackend: vLLM's default `logprobs_mode`,
    "raw_logprobs", gives that; pass it explicitly in llm_kwargs to pin it.
    """

    def __init__(self, model, **llm_kwargs):
        vllm = _import_vllm()
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


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise CorralError("the vllm backend: vllm is not installed; install the vllm extra "
                          "(`pip install 'corral[vllm]'`) on a GPU machine, or use the hf "
                          "backend (the default)") from None
    return vllm


def vllm_backend_for(policy, **llm_kwargs) -> VLLMBackend:
    """`engine_for(policy, backend="vllm")`: vLLM loads the policy's saved weights from
    `policy.source` (a model directory or hub id). It cannot follow weights that live only in
    memory, so a LoRA policy or one changed since loading is refused rather than sampled stale.
    """
    _import_vllm()  # the install hint first: it is the most likely problem
    source = str(getattr(policy, "source", "") or "")
    if getattr(policy, "is_lora", False):
        raise CorralError("the vllm backend loads a saved full model, and this policy carries "
                          "a LoRA adapter; merge it (`corral export RUN --merge`) and load the "
                          "merged directory, or use the hf backend")
    if not source:
        raise CorralError("the vllm backend loads the policy's saved weights, and this policy "
                          "names none (policy.source is empty); load it from a model directory "
                          "or hub id, or use the hf backend")
    versions = getattr(policy, "_param_versions", None)
    if versions is not None and versions() != getattr(policy, "_versions", versions()):
        raise CorralError("the policy's weights changed in memory since it was loaded, and "
                          f"vLLM would sample the saved ones from {source}; save the model and "
                          "load that, or use the hf backend")
    if "dtype" not in llm_kwargs:  # the dtype the policy was loaded with, as vLLM names it
        dtype = next(policy.model.parameters()).dtype
        llm_kwargs["dtype"] = str(dtype).removeprefix("torch.")
    return VLLMBackend(source, **llm_kwargs)


def _from_vllm(completion, prompt_index: int, sample_index: int) -> Generation:
    if completion.finish_reason == "length":
        reason = "length"
    else:  # vLLM reports "stop" for both; stop_reason holds the stop string when one matched
        reason = "stop" if isinstance(completion.stop_reason, str) else "eos"
    token_ids = list(completion.token_ids)
    logprobs = [float(step[tok].logprob) for tok, step in zip(token_ids, completion.logprobs or [])]
    return Generation(text=completion.text, token_ids=token_ids, logprobs=logprobs,
                      finish_reason=reason, prompt_index=prompt_index, sample_index=sample_index)
