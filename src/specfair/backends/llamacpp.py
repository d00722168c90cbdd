"""The ``llamacpp`` backend: llama.cpp's ``llama-server``, started and stopped by specfair.

Two servers (:class:`specfair.backends.llama_server.LlamaServer`) run side by side on 127.0.0.1
(free ports, one slot each, ``--metrics``): one with the target alone (AR) and one with the
target and ``--spec-draft-model`` / ``-md`` (SD), so that the AR runs never pay for a loaded
drafter (without a drafter only the first runs; backends of several drafters can share one
AR server: ``ar_server``). With ``proposer="ngram"`` the SD server has no draft model:
llama.cpp's own prompt lookup drafts (``--spec-type ngram-simple``: the last 3 tokens looked
up in the context, the γ tokens that followed their latest earlier occurrence drafted; builds
from 2026 on).
Each request is a bounded, non-streaming ``POST /completion`` with the prompt as token
ids (the same chat-templated ids as the hf backend), ``cache_prompt: false`` (the SD request
must not reuse the AR request's prompt cache), greedy unless a temperature is given,
``speculative.n_max = gamma``, ``speculative.n_min = 0``, ``speculative.p_min = 0`` (always
draft gamma tokens, like the hf loop; the n-gram drafts' length is the server's
``--spec-ngram-simple-size-m``, and builds from 2026 on ignore these request fields: their
server flags are set to the same values). Per request the backend reads ``timings``
(``prompt_ms``, ``predicted_ms``, ``draft_n``, ``draft_n_accepted``) and, from the Prometheus
``/metrics`` counters before/after it, the verification steps
(``spec_decode_num_drafts_total``) and accepted tokens per draft position, when the build
exports them (llama.cpp builds from 2026 on do).

The servers are always stopped: on ``close()``, at interpreter exit, on errors and on Ctrl-C
(see :mod:`specfair.backends.llama_server`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from specfair.backends.base import EngineResult
from specfair.backends.llama_server import (
    INSTALL_HINT,
    LlamaServer,
    find_llama_server,
    server_version,
)
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.models.eos import eos_ids
from specfair.models.fetch import gguf_path
from specfair.models.load import load_tokenizer
from specfair.models.registry import KNOWN_MODELS


def resolve_gguf(spec: str | os.PathLike) -> Path:
    """A known model's cached GGUF (``specfair models fetch``) or a ``.gguf`` path."""
    spec = str(spec)
    if spec in KNOWN_MODELS:
        p = gguf_path(spec)
        if not p.is_file():
            raise SpecfairError(
                f"no GGUF of {spec} in the cache; run `specfair models fetch {spec}`"
            )
        return p
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise SpecfairError(f"GGUF file not found: {p}")
        return p
    if (p / "config.json").is_file():
        raise SpecfairError(
            f"{p} is a Hugging Face directory; llama.cpp needs a GGUF: run "
            f"`specfair export-gguf {p} OUT.gguf` and pass OUT.gguf"
        )
    raise SpecfairError(f"{spec!r}: not a known model name or a .gguf file")


PROPOSERS = ("model", "ngram")


class LlamaCppBackend:
    """Target (and drafter) GGUFs served by two ``llama-server`` processes (see module doc).

    ``tokenizer``: an HF tokenizer spec for the chat template (default: the target's — its
    cached HF directory for a known name, else the GGUF's own tokenizer)."""

    name = "llamacpp"

    def __init__(
        self, target: str, drafter: str | None, *, gamma: int = DEFAULT_GAMMA,
        tokenizer: str | None = None, binary: str | None = None, threads: int | None = None,
        ctx_size: int = 4096, proposer: str = "model",
        request_timeout: float = 600.0, log_dir: str | None = None,
        extra_args: Sequence[str] = (), startup_timeout: float = 600.0,
        ar_server: LlamaServer | None = None,
    ):  # fmt: skip
        """``proposer``: "model" (``drafter``'s GGUF drafts; ``drafter`` None: no SD server,
        the target alone, mode "ar" only) or "ngram" (llama.cpp's own prompt lookup drafts;
        ``drafter`` is ignored, no GGUF is needed). ``ar_server``: a server of the same target
        alone to run mode "ar" on, shared with other backends (started if it is not; ``close``
        leaves it to its owner)."""
        if proposer not in PROPOSERS:
            raise SpecfairError(f"--backend llamacpp drafts with --proposer "
                                f"{' or '.join(PROPOSERS)}, got {proposer!r}")
        self.binary = str(find_llama_server(binary))
        self.proposer = proposer
        self.target_gguf = resolve_gguf(target)
        use = proposer == "model" and drafter is not None
        self.drafter_gguf = resolve_gguf(drafter) if use else None
        self.target_label = str(target)
        self.drafter_label = str(drafter) if use else "none"
        self.tokenizer = load_tokenizer(tokenizer or target)
        self.gamma, self.request_timeout = gamma, request_timeout
        kw = dict(binary=self.binary, threads=threads, ctx_size=ctx_size, log_dir=log_dir,
                  extra_args=extra_args, startup_timeout=startup_timeout)  # fmt: skip
        if ar_server is not None and ar_server.model != self.target_gguf:
            raise SpecfairError(f"ar_server serves {ar_server.model}, not {self.target_gguf}")
        self.servers = {"ar": ar_server or LlamaServer(self.target_gguf, **kw)}
        if use or proposer == "ngram":
            self.servers["sd"] = LlamaServer(self.target_gguf, draft=self.drafter_gguf,
                                             gamma=gamma, spec="draft" if use else "ngram", **kw)
        self._owned = [s for s in self.servers.values() if s is not ar_server]
        self._last_metrics: dict[str, dict] = {}
        # specfair's EOS rule without a model config: the tokenizer's end-of-sequence id
        self._eos = eos_ids(None, self.tokenizer)
        try:
            for mode, s in self.servers.items():
                s.start()
                self._last_metrics[mode] = s.metrics()
        except BaseException:
            self.close()
            raise

    def generate(
        self, mode: str, ids: Sequence[int], *, gamma: int, max_new_tokens: int,
        temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0,
    ) -> EngineResult:  # fmt: skip
        if mode not in self.servers:
            raise SpecfairError(f"this llama.cpp backend has no drafter: mode {mode!r}")
        server = self.servers[mode]
        body = {
            "prompt": [int(t) for t in ids], "n_predict": int(max_new_tokens), "stream": False,
            "cache_prompt": False, "return_tokens": True, "seed": int(seed),
            "temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p),
            "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "n_probs": 0,
        }  # fmt: skip
        if mode == "sd":  # draft-model settings; n-gram drafts are sized by the server's flags
            body.update({"speculative.n_max": int(gamma), "speculative.n_min": 0,
                         "speculative.p_min": 0.0})  # fmt: skip
        t0 = time.perf_counter()
        out = server.request("/completion", body, timeout=self.request_timeout)
        request_s = time.perf_counter() - t0
        timings = out.get("timings", {})
        if not out.get("tokens") and out.get("tokens_predicted"):
            raise SpecfairError(
                "llama-server returned no token ids (too old for return_tokens?); "
                f"rebuild it with `{INSTALL_HINT}`"
            )
        tokens = [int(t) for t in out.get("tokens") or []]
        stop = "eos" if out.get("stop_type") == "eos" else "max_tokens"
        if stop == "eos" and self._eos and (not tokens or tokens[-1] not in self._eos):
            tokens.append(self._eos[0])  # the hf records keep the EOS token
        res = EngineResult(
            tokens=tokens,
            wall_s=(timings.get("prompt_ms", 0.0) + timings.get("predicted_ms", 0.0)) / 1000,
            prefill_s=timings.get("prompt_ms", 0.0) / 1000,
            stop_reason=stop,
            drafted=int(timings.get("draft_n", 0)),
            accepted=int(timings.get("draft_n_accepted", 0)),
            gamma=int(gamma),
            extra={"timings": timings, "request_s": request_s,
                   "stop_type": out.get("stop_type")},  # fmt: skip
        )
        if mode == "sd":
            self._add_counters(mode, res)
        return res

    def _add_counters(self, mode: str, res: EngineResult) -> None:
        before, after = self._last_metrics[mode], self.servers[mode].metrics()
        self._last_metrics[mode] = after
        key = "spec_decode_num_drafts_total"
        if key not in after:
            return  # an older build: totals only
        res.n_drafts = int(after[key] - before.get(key, 0))
        pa = after.get("spec_decode_num_accepted_tokens_per_pos_total", {})
        pb = before.get("spec_decode_num_accepted_tokens_per_pos_total", {})
        n = max((int(k) + 1 for k in pa), default=0)
        res.accepted_per_pos = [int(pa.get(str(i), 0) - pb.get(str(i), 0)) for i in range(n)]
        drafted = after.get("spec_decode_num_draft_tokens_total", 0) - before.get(
            "spec_decode_num_draft_tokens_total", 0
        )
        if int(drafted) != res.drafted:  # counters and timings disagree: keep the totals only
            res.extra["counters_mismatch"] = {"metrics_drafted": int(drafted)}
            res.n_drafts = res.accepted_per_pos = None

    def info(self) -> dict:
        s = self.servers.get("sd", self.servers["ar"])
        stamp = Path(self.binary).parent.parent / "VERSION.txt"  # written by the installer
        return {
            "backend": self.name,
            "engine": f"llama.cpp llama-server {server_version(self.binary)}",
            "build": stamp.read_text().strip() if stamp.is_file() else None,
            "binary": self.binary,
            "target_gguf": str(self.target_gguf),
            "drafter_gguf": str(self.drafter_gguf) if self.drafter_gguf else None,
            "proposer": self.proposer,
            "server_args": _drop_port(s.command(0)[1:]),
            "threads": s.threads,
        }

    def close(self) -> None:
        for s in getattr(self, "_owned", []):
            s.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drop_port(args: list[str]) -> list[str]:
    i = args.index("--port")
    return args[:i] + args[i + 2 :]
