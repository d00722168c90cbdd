"""The hf backend through the Backend interface gives the records of today's engine."""

import json

from specfair.backends import open_backend
from specfair.measure.bench import run_bench
from specfair.tasks import Prompt


def test_hf_backend_matches_direct_run(tiny_pair, tmp_path):
    prompts = [Prompt(id="p0", task="t", turns=("hello",), reference=None, source="x")]
    be = open_backend("hf", str(tiny_pair[0]), str(tiny_pair[1]), dtype="float32",
                      device="cpu", kernels="default")
    a = run_bench(None, prompts, tmp_path / "a", gamma=3, max_new_tokens=8, backend=be,
                  progress=False, warmup=False)
    b = run_bench((be.target, be.drafter, be.tokenizer), prompts, tmp_path / "b", gamma=3,
                  max_new_tokens=8, progress=False, warmup=False)
    ra = [json.loads(x) for x in a.read_text().splitlines()]
    rb = [json.loads(x) for x in b.read_text().splitlines()]
    for x, y in zip(ra, rb, strict=True):
        for k in ("tokens", "drafted", "accepted", "accepted_lengths", "backend"):
            assert x[k] == y[k], k
    assert be.info()["backend"] == "hf"
