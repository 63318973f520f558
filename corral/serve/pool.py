"""The models behind /v1/chat/completions: loaded lazily, evicted least-recently-used under a
budget (at most `max_models` full models loaded, and all parameters' bytes under
`memory_bytes`), and one generation thread that batches requests. A LoRA ft: model whose
base is loaded rides on it (adapters.py: the base's weights shared, only the adapter's
added); it does not count against `max_models` and leaves with its base.

Dynamic batching: requests wait in one queue; the thread takes every waiting request of the
oldest request's model and answers them with one `Engine.generate` call per distinct set of
sampling parameters (a request with a `seed` decodes alone, so its answer does not depend on
its neighbours). Requests that arrive while a batch decodes join the next batch; a request
cannot join a decode already running (no continuous batching yet). Generation never runs on
the event loop; a request whose client left before its batch started is skipped.

    pool = Pool(resolve, max_models=2); pool.start()
    future = pool.submit("tiny", prompt_ids_fn, params)   # concurrent.futures.Future
"""
from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

GiB = 1024 ** 3


@dataclass
class Entry:
    """A loaded model: its generator and the bytes it holds; an adapter names the base entry
    it rides on and its adapter name there; a base with adapters has their peft wrapper."""
    generator: object
    bytes: int
    base: str | None = None
    adapter: str | None = None
    wrapper: object = None

    @contextmanager
    def selected(self, pool):
        """Run a batch on this model: the base with adapters disabled, or this adapter."""
        if self.adapter is not None:
            pool.loaded[self.base].wrapper.set_adapter(self.adapter)
            yield
        elif self.wrapper is not None:
            with self.wrapper.disable_adapter():
                yield
        else:
            yield


@dataclass
class Request:
    model: str  # the API's model id
    conversation: list
    params: object  # SamplingParams
    future: Future = field(default_factory=Future)
    prompt_ids: list | None = None

    def key(self):
        p = self.params
        if p.seed is not None:  # seeded: alone, so prompt_index 0 always
            return id(self)
        return (p.max_new_tokens, p.temperature, p.top_p, p.n, p.stop)


def param_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (what it holds in memory, bar activations)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class Pool:
    """`resolve(model_id) -> (key, path)`: the load key (the path; two ids of one model share
    it) and what `generator_for` loads. `load(path) -> LocalGenerator` is swappable in tests."""

    def __init__(self, resolve, *, max_models: int = 2, memory_bytes: int | None = None,
                 runs_root: str = "runs", load=None, share_adapters: bool = True):
        self.resolve, self.max_models, self.memory_bytes = resolve, max(1, max_models), \
            memory_bytes
        self.runs_root, self.share_adapters, self._adapters = runs_root, share_adapters, 0
        self.load = load or self._load
        self.loaded: OrderedDict[str, Entry] = OrderedDict()  # least recently used first
        self.stats = {"requests": 0, "batches": 0, "generate_calls": 0, "loads": 0,
                      "evictions": 0, "skipped": 0}
        self._queue: list[Request] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="corral-chat", daemon=True)

    # -- the caller's side -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def submit(self, model: str, conversation: list, params) -> Future:
        req = Request(model, conversation, params)
        with self._cv:
            self._queue.append(req)
            self.stats["requests"] += 1
            self._cv.notify()
        return req.future

    def snapshot(self) -> dict:
        with self._cv:
            return {**self.stats, "waiting": len(self._queue),
                    "loaded": {k: e.bytes for k, e in self.loaded.items()},
                    "adapters": {k: e.base for k, e in self.loaded.items() if e.base}}

    # -- the generation thread ---------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    for req in self._queue:
                        req.future.cancel()
                    return
                model = self._queue[0].model
                batch = [r for r in self._queue if r.model == model]
                self._queue = [r for r in self._queue if r.model != model]
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            self.stats["skipped"] += len(batch) - len(live)  # their clients left
            batch = live
            if batch:
                self._answer(model, batch)

    def _answer(self, model: str, batch: list[Request]) -> None:
        try:
            entry = self._generator(model)
            generator = entry.generator
        except Exception as exc:  # noqa: BLE001  (a model that will not load fails its requests)
            for req in batch:
                req.future.set_exception(exc)
            return
        self.stats["batches"] += 1
        groups: dict = {}
        for req in batch:
            try:
                req.prompt_ids = self._prompt_ids(generator, req.conversation)
            except Exception as exc:  # noqa: BLE001  (a template that cannot render this chat)
                req.future.set_exception(exc)
                continue
            groups.setdefault(req.key(), []).append(req)
        for reqs in groups.values():
            try:
                self.stats["generate_calls"] += 1
                with entry.selected(self):
                    out = generator.engine.generate([r.prompt_ids for r in reqs],
                                                    reqs[0].params)
            except Exception as exc:  # noqa: BLE001  (reported to each request of the call)
                for req in reqs:
                    req.future.set_exception(exc)
                continue
            for req, gens in zip(reqs, out):
                req.future.set_result((gens, len(req.prompt_ids), generator.engine.tokenizer))

    @staticmethod
    def _prompt_ids(generator, conversation) -> list[int]:
        text = generator.engine.render_chat(conversation, generator.template)
        return list(generator.engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- loading and eviction ----------------------------------------------------------
    def _generator(self, model: str):
        key, path = self.resolve(model)
        entry = self.loaded.get(key)
        if entry is None:
            entry = self._load_entry(key, path)
        self.loaded.move_to_end(key)
        if entry.base is not None:  # an adapter keeps its base warm
            self.loaded.move_to_end(entry.base)
            self.loaded.move_to_end(key)
        self._fit_budget({key, entry.base})
        return entry

    def _load_entry(self, key: str, path: str) -> Entry:
        from corral.serve import adapters

        base_name = adapters.base_of(path) if self.share_adapters else None
        base = next((k for k, e in self.loaded.items() if base_name and e.base is None
                     and adapters.same_model(k, base_name)), None)
        if base is not None:  # a LoRA ft: model on a loaded base: share its weights
            self._adapters += 1
            name = f"a{self._adapters}"
            generator, size = adapters.attach(self.loaded[base], path, name)
            entry = Entry(generator, size, base=base, adapter=name)
        else:
            while sum(e.base is None for e in self.loaded.values()) >= self.max_models:
                self._evict(next(iter(self.loaded)))
            generator = self.load(path)
            inner = getattr(generator.engine.backend, "model", None)
            entry = Entry(generator, param_bytes(inner) if inner is not None else 0)
        self.loaded[key] = entry
        self.stats["loads"] += 1
        return entry

    def _fit_budget(self, keep: set) -> None:
        while self.memory_bytes and sum(e.bytes for e in self.loaded.values()) > \
                self.memory_bytes:
            victim = next((k for k in self.loaded if k not in keep), None)
            if victim is None:
                return
            self._evict(victim)

    def _evict(self, key: str) -> None:
        from corral.serve import adapters

        entry = self.loaded.pop(key)
        self.stats["evictions"] += 1
        if entry.base is not None:
            adapters.detach(self.loaded[entry.base], entry.adapter)
        for riding in [k for k, e in self.loaded.items() if e.base == key]:
            del self.loaded[riding]  # its adapters go with a base
            self.stats["evictions"] += 1
        entry = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def _load(self, path: str):
        from corral.infer.generators import generator_for

        t0 = time.monotonic()
        generator = generator_for(path, root=self.runs_root, key="model")
        generator.load_s = time.monotonic() - t0
        return generator
