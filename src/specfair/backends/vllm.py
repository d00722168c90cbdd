"""The ``vllm`` backend (GPU): vLLM's offline ``LLM`` with a draft model.

Two engines share the GPU (``gpu_memory_utilization`` each): the target alone (AR) and::

    LLM(model=T, speculative_config={"method": "draft_model", "model": D,
                                     "num_speculative_tokens": gamma},
        disable_log_stats=False)

One request at a time (``llm.generate([{"prompt_token_ids": ids}], SamplingParams(...))``,
greedy by default), wall time around the call. Acceptance per request comes from, in order:

1. the request's own spec-decode metrics (``output.metrics.speculative_decoding`` — attribute
   or dict — in vLLM versions with per-request spec-decode metrics; read by
   :func:`per_request_counts`, tolerant of the ``num_drafts``/``num_spec_steps`` and
   ``accepted_per_pos``/``acceptance_histogram`` spellings);
2. else the difference of the engine's counters ``vllm:spec_decode_num_drafts``,
   ``..._num_draft_tokens``, ``..._num_accepted_tokens`` and the vector
   ``..._num_accepted_tokens_per_pos`` from ``llm.get_metrics()`` before/after the request
   (exact, since nothing else runs on that engine).

Targets vLLM's V1 engine with ``method: "draft_model"`` (vLLM >= 0.12; older V1 releases had
no draft-model speculation, and V0's ``speculative_model=`` API is not supported). vLLM's CPU
build has no draft-model speculation: on this project's CPU machines the adapter is tested
against recorded-shape responses and metrics only (tests/backends/test_vllm.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from specfair.backends.base import EngineResult
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.models.load import load_tokenizer
from specfair.models.registry import KNOWN_MODELS, model_dir

SUPPORTED = ">=0.12"
_NAMES = {
    "vllm:spec_decode_num_drafts": "n_drafts",
    "vllm:spec_decode_num_draft_tokens": "drafted",
    "vllm:spec_decode_num_accepted_tokens": "accepted",
    "vllm:spec_decode_num_accepted_tokens_per_pos": "per_pos",
}


def spec_counters(metrics) -> dict:
    """Sum vLLM's spec-decode counters (``llm.get_metrics()``: objects with ``name`` and
    ``value``, or ``values`` for the per-position vector; several label sets are summed)."""
    out = {"n_drafts": 0, "drafted": 0, "accepted": 0, "per_pos": []}
    for m in metrics:
        key = _NAMES.get(getattr(m, "name", None))
        if key is None:
            continue
        if key == "per_pos":
            vals = list(getattr(m, "values", []) or [])
            acc = out["per_pos"]
            acc.extend([0] * (len(vals) - len(acc)))
            for i, v in enumerate(vals):
                acc[i] += int(v)
        else:
            out[key] += int(getattr(m, "value", 0))
    return out


def counter_delta(before: dict, after: dict) -> dict:
    n = max(len(before["per_pos"]), len(after["per_pos"]))
    pb = before["per_pos"] + [0] * (n - len(before["per_pos"]))
    pa = after["per_pos"] + [0] * (n - len(after["per_pos"]))
    return {
        "n_drafts": after["n_drafts"] - before["n_drafts"],
        "drafted": after["drafted"] - before["drafted"],
        "accepted": after["accepted"] - before["accepted"],
        "per_pos": [a - b for a, b in zip(pa, pb, strict=True)],
    }


def _get(obj, *names):
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if not isinstance(obj, dict) and getattr(obj, n, None) is not None:
            return getattr(obj, n)
    return None


def per_request_counts(output, gamma: int) -> dict | None:
    """The request's own spec-decode counters, if this vLLM reports them; else None."""
    metrics = _get(output, "metrics")
    sd = _get(metrics, "speculative_decoding", "spec_decoding", "spec_decode") if metrics else None
    if sd is None:
        return None
    n_drafts = _get(sd, "num_drafts", "num_spec_steps")
    drafted = _get(sd, "num_draft_tokens")
    accepted = _get(sd, "num_accepted_tokens", "num_accepted_draft_tokens")
    if n_drafts is None or drafted is None or accepted is None:
        return None
    per_pos = _get(sd, "num_accepted_tokens_per_pos", "accepted_per_pos")
    if per_pos is None:
        hist = _get(sd, "acceptance_histogram")  # {accepted drafts in a step: steps}
        if hist is not None:
            hist = {int(k): int(v) for k, v in dict(hist).items()}
            per_pos = [sum(v for k, v in hist.items() if k > i) for i in range(gamma)]
    return {
        "n_drafts": int(n_drafts), "drafted": int(drafted), "accepted": int(accepted),
        "per_pos": [int(x) for x in per_pos] if per_pos is not None else None,
    }  # fmt: skip


class VLLMBackend:
    """Two vLLM engines (target; target + draft model). See the module docstring."""

    name = "vllm"

    def __init__(
        self, target: str, drafter: str, *, gamma: int = DEFAULT_GAMMA,
        tokenizer: str | None = None,
        gpu_memory_utilization: float = 0.4, max_model_len: int = 4096, dtype: str = "auto",
        llm_factory: Callable | None = None, sampling_params: Callable | None = None,
        engine_kwargs: dict | None = None,
    ):  # fmt: skip
        self.target_label, self.drafter_label, self.gamma = str(target), str(drafter), gamma
        self.version = "n/a"
        if llm_factory is None:
            try:
                import vllm
            except ImportError as e:
                raise SpecfairError(
                    "the vllm backend needs vLLM on a GPU machine: pip install 'vllm>=0.12'"
                ) from e
            llm_factory, sampling_params = vllm.LLM, vllm.SamplingParams
            self.version = vllm.__version__
        self._sampling_params = sampling_params or (lambda **kw: kw)
        t_path, d_path = _hf_path(target), _hf_path(drafter)
        common = dict(max_model_len=max_model_len, dtype=dtype,
                      gpu_memory_utilization=gpu_memory_utilization, disable_log_stats=False,
                      **(engine_kwargs or {}))  # fmt: skip
        self.engines = {
            "ar": llm_factory(model=t_path, **common),
            "sd": llm_factory(
                model=t_path,
                speculative_config={"method": "draft_model", "model": d_path,
                                    "num_speculative_tokens": int(gamma)},
                **common,
            ),  # fmt: skip
        }
        if tokenizer is None and hasattr(self.engines["ar"], "get_tokenizer"):
            self.tokenizer = self.engines["ar"].get_tokenizer()
        else:
            self.tokenizer = load_tokenizer(tokenizer or target)
        self._paths = {"target": t_path, "drafter": d_path}

    def generate(
        self, mode: str, ids: Sequence[int], *, gamma: int, max_new_tokens: int,
        temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0,
    ) -> EngineResult:  # fmt: skip
        if gamma != self.gamma:
            raise SpecfairError(f"this vllm backend was started with gamma={self.gamma}")
        llm = self.engines[mode]
        sp = self._sampling_params(
            temperature=float(temperature), top_p=float(top_p), top_k=int(top_k) or -1,
            max_tokens=int(max_new_tokens), seed=int(seed),
        )  # fmt: skip
        before = spec_counters(llm.get_metrics()) if mode == "sd" else None
        t0 = time.perf_counter()
        outs = llm.generate([{"prompt_token_ids": [int(t) for t in ids]}], sp, use_tqdm=False)
        wall = time.perf_counter() - t0
        out = outs[0]
        comp = out.outputs[0]
        res = EngineResult(
            tokens=[int(t) for t in comp.token_ids],
            wall_s=wall,
            stop_reason="eos" if getattr(comp, "finish_reason", None) == "stop" else "max_tokens",
            gamma=int(gamma),
            extra={"finish_reason": getattr(comp, "finish_reason", None)},
        )
        if mode == "sd":
            counts = per_request_counts(out, gamma)
            source = "per_request"
            if counts is None:
                counts = counter_delta(before, spec_counters(llm.get_metrics()))
                source = "get_metrics_delta"
            res.drafted, res.accepted = counts["drafted"], counts["accepted"]
            res.n_drafts, res.accepted_per_pos = counts["n_drafts"], counts["per_pos"]
            res.extra["counts_source"] = source
        return res

    def info(self) -> dict:
        return {
            "backend": self.name,
            "engine": f"vLLM {self.version}",
            "supported_versions": SUPPORTED,
            **self._paths,
        }

    def close(self) -> None:
        self.engines = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _hf_path(spec: str) -> str:
    """vLLM loads HF directories (or hub ids); a known name → its cached HF directory."""
    return str(model_dir(spec)) if spec in KNOWN_MODELS else str(spec)
