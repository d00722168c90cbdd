"""SuffixDecoding drafts (``proposer="suffix"`` / ``"suffix-hybrid"``, :mod:`specfair.decoding.
suffix`): the implicit suffix tree against an explicit one on random corpora, greedy equality
with the autoregressive decoder under each γ policy, the sampled output distribution, and the
per-task index on disk (:mod:`specfair.drafters.index`)."""

import random

import pytest
import torch
from test_distribution import ALPHA, N, exact_marginals, gof_pvalue

from specfair.decoding import (
    CostAwareGamma,
    FixedGamma,
    HeuristicGamma,
    autoregressive_generate,
    speculative_generate,
)
from specfair.decoding.ngram import index_dir, parse_proposer, uses_drafter
from specfair.decoding.suffix import (
    SuffixIndex,
    SuffixParams,
    SuffixProposer,
    context_speculate,
    suffix_draft,
)
from specfair.errors import SpecfairError


def _trie(seqs, depth):
    """Every substring of at most ``depth`` tokens of each sequence, counted (a node's count:
    the occurrences of its path), as nested dicts: Arctic's tree without its compression."""
    root = {"n": 0, "c": {}}
    for s in seqs:
        for i in range(len(s)):
            node = root
            for t in s[i : i + depth]:
                node = node["c"].setdefault(t, {"n": 0, "c": {}})
                node["n"] += 1
    return root


def _reference(root, ctx, p: SuffixParams):
    """Arctic's ``SuffixTree::speculate`` (path mode) on the explicit trie, ties to the smaller
    token id: (tokens, score, match length)."""
    ctx = list(ctx)[-p.max_tree_depth :]
    best = ([], 0.0, 0)
    for m in range(1, len(ctx)):
        node, count = root, None
        for t in ctx[-m:]:
            node = node["c"].get(t)
            if node is None:
                break
        if node is None:
            break
        toks, probs, prob, count = [], [], 1.0, node["n"]
        while len(toks) < p.cap(m) and node["c"]:
            t, child = max(node["c"].items(), key=lambda kv: (kv[1]["n"], -kv[0]))
            if prob * child["n"] / count < p.min_token_prob:
                break
            prob *= child["n"] / count
            toks.append(t)
            probs.append(prob)
            node, count = child, child["n"]
        if sum(probs) >= best[1]:
            best = (toks, sum(probs), m)
    return best


def test_the_index_drafts_as_an_explicit_suffix_tree_on_random_corpora():
    rng = random.Random(0)
    checked = 0
    for _ in range(200):
        vocab = rng.choice([2, 3, 5, 20])
        seqs = [[rng.randrange(vocab) for _ in range(rng.randrange(0, 30))]
                for _ in range(rng.randrange(1, 6))]  # fmt: skip
        p = SuffixParams(max_tree_depth=rng.choice([3, 5, 8, 24]),
                         max_spec_factor=rng.choice([0.5, 1.0, 2.0]),
                         max_spec_offset=rng.choice([0.0, 1.0]),
                         min_token_prob=rng.choice([0.0, 0.1, 0.3]),
                         max_spec_tokens=rng.choice([2, 5, 24]))  # fmt: skip
        index, root = SuffixIndex(seqs), _trie(seqs, p.max_tree_depth)
        for _ in range(5):
            ctx = [rng.randrange(vocab) for _ in range(rng.randrange(1, 12))]
            got = index.speculate(ctx, p)
            want = _reference(root, ctx, p)
            assert (got.tokens, got.match_len) == (want[0], want[2]), (seqs, ctx, p)
            assert got.score == pytest.approx(want[1])
            own = context_speculate(ctx, p)  # the per-request tree: the context itself
            assert (own.tokens, own.match_len) == _reference(_trie([ctx], p.max_tree_depth),
                                                             ctx, p)[::2]  # fmt: skip
            checked += bool(got.tokens)
    assert checked > 200  # most contexts drafted something


def test_a_draft_follows_the_most_frequent_continuation_and_stops_below_min_prob():
    index = SuffixIndex([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4], [7, 2, 9]])
    d = index.speculate([8, 1, 2])  # [1, 2] occurs 3 times: then 3 (3/3), then 4 (2/3)
    assert d.tokens == [3, 4] and d.probs == pytest.approx([1.0, 2 / 3]) and d.match_len == 2
    d = index.speculate([8, 1, 2], SuffixParams(max_spec_factor=0.5))  # 0.5 * 2: one token
    assert d.tokens == [3]
    d = index.speculate([8, 1, 2], SuffixParams(max_spec_offset=5.0))  # the sequences end
    assert d.tokens == [3, 4]
    d = index.speculate([8, 1, 2], SuffixParams(min_token_prob=0.7))
    assert d.tokens == [3]  # 2/3 < 0.7
    d = index.speculate([8, 1, 2], SuffixParams(max_tree_depth=3))  # match + draft <= depth
    assert d.tokens == [3]
    assert index.speculate([8, 6]).tokens == []  # no occurrence
    assert index.speculate([4]).tokens == []  # a single token: nothing to match it against
    d = index.speculate([0, 2], SuffixParams(max_spec_offset=1.0))  # [2]: 3 of 4 are then 3
    assert d.tokens == [3, 4] and d.probs == pytest.approx([0.75, 0.5]) and d.match_len == 1


def test_the_request_tree_counts_the_context_end_and_wins_ties():
    # in the context [5, 6, 5]: [5] occurs twice, once followed by 6 (probability 1/2)
    d = context_speculate([5, 6, 5])
    assert d.tokens == [6] and d.probs == pytest.approx([0.5])
    index = SuffixIndex([[5, 7]])  # [5] then 7 always: score 1 beats the request's 1/2
    assert suffix_draft([5, 6, 5], index).tokens == [7]
    # [5, 6, 5, 6, 5]: the request's [6, 5] after [5, 6, 5] scores 1/2 + 1/2, as the index's
    assert suffix_draft([5, 6, 5, 6, 5], index).tokens == [6, 5]


def test_suffix_proposer_q_is_one_hot_and_sized_by_the_match_not_gamma():
    index = SuffixIndex([[3, 4, 5, 6, 7, 8, 9] * 2])
    prop = SuffixProposer(vocab=12, max_g=8, greedy=False, device=torch.device("cpu"),
                          index=index)  # fmt: skip
    buf = torch.tensor([[1, 3, 4, 5, 6] + [0] * 8])
    k = prop.propose(buf, 5, 1, room=8)  # γ says 1; the match of 4 tokens drafts 4
    assert k == 4 and buf[0, 5:9].tolist() == [7, 8, 9, 3]
    q = prop.draft_probs(k)
    assert q.shape == (1, 4, 12) and q.sum(-1).eq(1).all()
    assert q[0].argmax(-1).tolist() == [7, 8, 9, 3]
    assert prop.propose(buf, 5, 4, room=2) == 2  # never more than the room
    assert prop.propose(torch.tensor([[10, 11, 0]]), 2, 2, room=1) == 0


def test_parse_suffix_proposers():
    assert parse_proposer("suffix") == ("suffix", None)
    assert parse_proposer("suffix-hybrid:/x/idx") == ("suffix-hybrid", None)
    assert index_dir("suffix:/x/a:b") == "/x/a:b" and index_dir("suffix-hybrid") is None
    assert index_dir("hybrid:3") is None
    assert not uses_drafter("suffix:/x") and uses_drafter("suffix-hybrid")
    for bad in ("suffix:", "suffix-hybrid: ", "suffixes", "hybrid-suffix"):
        with pytest.raises(SpecfairError, match="proposer"):
            parse_proposer(bad)


REPEATS = [
    [40, 101, 7, 220, 33, 58] * 3,
    [5, 9, 5, 9, 5, 9, 11, 12, 13, 5, 9],
    [100, 3, 100, 4, 100, 5, 100],
    [77],
]


@pytest.fixture(scope="module")
def corpus(noisy_pair):
    """The target's greedy continuations of the REPEATS (a task's "answers"), and prompts that
    start like them, so that the index's drafts are often (not always) accepted."""
    target, _ = noisy_pair
    answers = [p + autoregressive_generate(target, p, max_new_tokens=24).tokens for p in REPEATS]
    prompts = [a[: len(p) + 4] for a, p in zip(answers, REPEATS, strict=True)] + list(REPEATS)
    return SuffixIndex(answers + [list(range(50, 90))]), prompts


@pytest.mark.parametrize("kind", ["suffix", "suffix-hybrid"])
@pytest.mark.parametrize("gamma", [3, "heuristic", "adaptive"])
@pytest.mark.parametrize("with_index", [True, False])
def test_greedy_suffix_equals_autoregressive(noisy_pair, corpus, kind, gamma, with_index):
    target, drafter = noisy_pair
    index, prompts = corpus
    steps = []
    for prompt in prompts:
        ref = autoregressive_generate(target, prompt, max_new_tokens=32)
        g = {"heuristic": HeuristicGamma(start=3, max_gamma=8),
             "adaptive": CostAwareGamma(max_gamma=8)}.get(gamma, gamma)
        res = speculative_generate(target, drafter if kind == "suffix-hybrid" else None, prompt,
                                   max_new_tokens=32, gamma=g, proposer=kind,
                                   index=index if with_index else None)  # fmt: skip
        assert res.tokens == ref.tokens, prompt
        assert sum(s.accepted_len for s in res.steps) == len(res.tokens) - 1
        steps += res.steps
    used = {s.proposer for s in steps if s.drafted}
    assert "suffix" in used and used <= {"suffix", "ngram", "model"}
    if kind == "suffix-hybrid":
        assert "model" in used
    suffix = [s for s in steps if s.proposer == "suffix"]
    assert any(s.accepted == s.drafted for s in suffix)  # a fully accepted block
    assert any(s.accepted < s.drafted for s in steps)  # a rejection


def test_the_index_adds_accepted_drafts(noisy_pair, corpus):
    target, _ = noisy_pair
    index, prompts = corpus
    acc = {}
    for idx in (index, None):
        runs = [speculative_generate(target, None, p, max_new_tokens=32, gamma=3,
                                     proposer="suffix", index=idx) for p in prompts[:4]]
        acc[idx is None] = sum(r.n_accepted for r in runs)
    assert acc[False] > acc[True]  # the answers in the index are drafted and accepted


class _Spy(CostAwareGamma):
    def reset(self):
        super().reset()
        self.told = []

    def update(self, gamma, accepted, draft_s, verify_s):
        self.told.append(gamma)
        super().update(gamma, accepted, draft_s, verify_s)


def test_the_policy_sizes_and_hears_the_lookup_and_drafter_steps_not_the_suffix_steps(
        noisy_pair, corpus):  # fmt: skip
    target, drafter = noisy_pair
    index, prompts = corpus
    spy = _Spy(max_gamma=2)
    told = []
    for p in prompts:
        res = speculative_generate(target, drafter, p, max_new_tokens=32, gamma=spy,
                                   proposer="suffix-hybrid", index=index)  # fmt: skip
        told += [s.drafted for s in res.steps if s.proposer in ("model", "ngram")]
        assert spy.told == [s.drafted for s in res.steps if s.proposer in ("model", "ngram")]
        assert all(s.drafted <= 2 for s in res.steps if s.proposer in ("model", "ngram"))
    assert told


def test_suffix_errors(noisy_pair):
    target, _ = noisy_pair
    with pytest.raises(SpecfairError, match="needs a drafter"):
        speculative_generate(target, None, [1, 2], max_new_tokens=4, proposer="suffix-hybrid")
    with pytest.raises(SpecfairError, match="proposer"):
        speculative_generate(target, None, [1, 2], max_new_tokens=4, proposer="suffix:")


@pytest.mark.parametrize("proposer", ["suffix", "suffix-hybrid"])
def test_sampled_suffix_has_target_distribution(noisy_pair, corpus, proposer):
    """Sampling with deterministic drafts (q one-hot), from the index and the request: the
    first 4 tokens of N seeded runs against their exact marginals (chi-square at ALPHA)."""
    target, drafter = noisy_pair
    index, prompts = corpus
    prompt = prompts[0]
    kw = dict(max_new_tokens=4, temperature=1.0, gamma=2, proposer=proposer, index=index,
              eos_token_id=[])  # the marginals run past an end of sequence
    d = drafter if proposer == "suffix-hybrid" else None
    runs = [speculative_generate(target, d, prompt, seed=s, **kw) for s in range(N)]
    steps = [s for r in runs for s in r.steps if s.proposer == "suffix"]
    assert len(steps) > N // 2
    assert any(s.accepted == s.drafted for s in steps)
    assert any(s.accepted < s.drafted for s in steps)
    marginals = exact_marginals(target, prompt, 4, {})
    for pos in range(4):
        p = gof_pvalue([r.tokens[pos] for r in runs], marginals[pos])
        assert p > ALPHA, (pos, p)


# ----------------------------------------------------------------------------- the index on disk


def _train_prompts():
    from specfair.tasks.prompt import Prompt

    return [Prompt("a1", "alpha", ("q1",), reference="abcabd"),
            Prompt("a2", "alpha", ("q2",), reference=None),
            Prompt("b1", "beta", ("q3",), reference="xyz"),
            Prompt("c1", "gamma", ("q4",), reference=None)]


def test_index_round_trip_and_routing(tmp_path):
    from tiny import CHARS, make_tokenizer

    from specfair.drafters.index import INDEX_FILE, build_index, load_index

    tok = make_tokenizer()
    answers = {("a2", 0): {"response_ids": [5, 6, 7]}, ("zz", 0): {"response_ids": [9]},
               ("b1", 1): {"response_ids": [8, 8]}}  # zz: not a prompt of the split
    m = build_index(tmp_path / "idx", _train_prompts(), tok, tokenizer_name="tiny",
                    responses=answers, meta={"split": "train"})  # fmt: skip
    assert set(m["tasks"]) == {"alpha", "beta"} and m["tasks_without_text"] == ["gamma"]
    assert m["tasks"]["alpha"]["from"] == {"responses": 1, "references": 1}
    assert m["tasks"]["beta"] == {**m["tasks"]["beta"], "sequences": 2, "tokens": 5}
    assert (tmp_path / "idx" / INDEX_FILE).is_file()
    index = load_index(tmp_path / "idx", tok)
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    for task, seqs in (("alpha", [[5, 6, 7], enc("abcabd")]), ("beta", [[8, 8], enc("xyz")])):
        assert index.for_task(task).data.tolist() == SuffixIndex(seqs).data.tolist()
    assert index.for_task("gamma") is None and index.for_task(None) is None
    ab = enc("ab")
    assert index.for_task("alpha").speculate(ab).tokens == enc("c")  # "ab" -> "c" (and "d")
    assert index.settings()["index_sha256"].keys() == {"alpha", "beta"}
    chars = list(CHARS)
    chars[chars.index("z")], chars[chars.index("y")] = "y", "z"
    other = make_tokenizer(chars)  # two token strings swapped
    with pytest.raises(SpecfairError, match="another tokenizer"):
        index.check_tokenizer(other)


def test_several_thousand_sequences_round_trip_through_the_index(tmp_path):
    """Thousands of answers per task written and loaded back: the rebuilt search structure
    equals one built from the sequences directly. (Its speed is a benchmark, not a test:
    README, "Drafts from a task's own text".)"""
    from tiny import make_tokenizer

    from specfair.drafters.index import load_index, write_index

    rng = random.Random(0)
    seqs = [[rng.randrange(260) for _ in range(rng.randrange(50, 250))] for _ in range(3000)]
    texts = {f"t{i}": {"seqs": seqs[i::3], "from": {"responses": 1000, "references": 0}}
             for i in range(3)}  # fmt: skip
    tok = make_tokenizer()
    from specfair.drafters.index import vocab_hash

    write_index(tmp_path / "idx", texts, {"vocab_size": len(tok), "vocab_hash": vocab_hash(tok)})
    index = load_index(tmp_path / "idx", tok)
    assert index.for_task("t1").n_seqs == 1000
    assert index.for_task("t1").data.tolist() == SuffixIndex(seqs[1::3]).data.tolist()


def _bad_index(kind: str, good, tmp_path):
    import json
    import shutil

    bad = tmp_path / f"bad_{kind}"
    shutil.copytree(good, bad)
    manifest = json.loads((bad / "index.json").read_text())
    first = next(iter(manifest["tasks"].values()))
    if kind == "changed":  # a flipped byte in a task file: its sha256 differs
        f = bad / first["file"]
        data = bytearray(f.read_bytes())
        data[-1] ^= 1
        f.write_bytes(bytes(data))
    elif kind == "not json":
        (bad / "index.json").write_text("{nope")
    elif kind == "escapes":  # a file name outside the index
        first["file"] = "../x.safetensors"
        (bad / "index.json").write_text(json.dumps(manifest))
    elif kind == "format":
        (bad / "index.json").write_text(json.dumps({**manifest, "format": "other"}))
    elif kind == "missing":
        shutil.rmtree(bad)
    return bad


@pytest.fixture(scope="module")
def built_index(tiny_pair, tmp_path_factory):
    """`specfair index build` of the default suite's train split for the tiny target, with a
    responses file holding two answers."""
    import json

    from specfair.measure.index_build import index_build_command
    from specfair.tasks import load_suite

    t_dir, _ = tiny_pair
    root = tmp_path_factory.mktemp("index")
    train = load_suite("default").prompts("train")
    resp = root / "train_responses.jsonl"
    resp.write_text("".join(json.dumps({"id": p.id, "task": p.task, "turn": 0,
                                        "response_ids": [40, 41, 42, 43, 44]}) + "\n"
                            for p in train[:2]))  # fmt: skip
    manifest = index_build_command(str(t_dir), "default", root / "idx", responses=[resp])
    return root / "idx", manifest


def test_index_build_writes_each_tasks_texts(built_index):
    _, m = built_index
    assert m["split"] == "train" and m["suite"] == "default" and m["vocab_size"] == 260
    assert sum(t["from"]["responses"] for t in m["tasks"].values()) == 2
    assert sum(t["from"]["references"] for t in m["tasks"].values()) == 73
    assert all(t["tokens"] > 0 for t in m["tasks"].values())


@pytest.mark.parametrize("kind", ["changed", "not json", "escapes", "format", "missing"])
def test_a_bad_index_is_one_error_line_before_anything_loads(cli, tiny_pair, built_index,
                                                            tmp_path, kind):  # fmt: skip
    t_dir, d_dir = tiny_pair
    bad = _bad_index(kind, built_index[0], tmp_path)
    out = tmp_path / "bench"
    code, _, err = cli("bench", "--target", t_dir, "--drafter", "/nonexistent", "--suite",
                       "default", "--out", out, "--proposer", f"suffix:{bad}", "--n-per-task", 1,
                       "--max-new-tokens", 4, "--dtype", "float32", "--device", "cpu")
    assert code == 2 and err.startswith("error: index") and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything was written
    code, _, err = cli("generate", "abc", "--model", t_dir, "--proposer",
                       f"suffix-hybrid:{bad}", "--drafter", d_dir)
    assert code == 2 and err.startswith("error: index"), err


def test_bench_and_generate_draft_from_the_index(tiny_pair, built_index, tmp_path, capsys):
    from specfair.measure.commands import bench_command, generate_command
    from specfair.measure.io import read_jsonl

    t_dir, d_dir = tiny_pair
    idx, m = built_index
    kw = dict(n_per_task=1, max_new_tokens=8, dtype="float32", device="cpu", progress=False)
    for proposer in (f"suffix:{idx}", f"suffix-hybrid:{idx}"):
        out = tmp_path / proposer.split(":")[0]
        s = bench_command(str(t_dir), str(d_dir), "default", out, proposer=proposer,
                          policy="adaptive", **kw)  # fmt: skip
        assert s["meta"]["proposer"] == proposer
        sd = [r for r in read_jsonl(out / "bench.jsonl") if r["mode"] == "sd"]
        assert sd and all(r["matches_ar"] for r in sd)
        assert all(r["settings"]["index_sha256"] == {t: e["sha256"]
                                                     for t, e in m["tasks"].items()} for r in sd)
        used = set().union(*(r.get("by_proposer", {}) for r in sd))
        assert used <= ({"suffix"} if proposer.startswith("suffix:") else
                        {"suffix", "ngram", "model"})  # fmt: skip
    with pytest.raises(SpecfairError, match="was written with"):  # the proposer is a setting
        bench_command(str(t_dir), str(d_dir), "default", out, proposer="suffix-hybrid",
                      policy="adaptive", **kw)  # fmt: skip
    res = generate_command(str(t_dir), "abcabcabc", proposer=f"suffix:{idx}", task="code",
                           gamma=3, max_new_tokens=6, dtype="float32", device="cpu")
    assert len(res.tokens) == 6 and "suffix" in capsys.readouterr().err
    with pytest.raises(SpecfairError, match="give --task"):
        generate_command(str(t_dir), "abc", proposer=f"suffix:{idx}", max_new_tokens=4,
                         dtype="float32", device="cpu")


def test_engine_benchmark_runs_the_index_variants(tiny_pair, built_index, tmp_path, one_thread):
    import json

    from benchmark_scripts import load_benchmark

    engine = load_benchmark("engine")
    t_dir, d_dir = tiny_pair
    out = tmp_path / "engine.json"
    argv = ["--target", str(t_dir), "--drafter", str(d_dir), "--dtype", "float32",
            "--device", "cpu", "--kernels", "default", "--suite", "default", "--n-per-task", "1",
            "--limit", "3", "--max-new-tokens", "8", "--no-hf", "--conf-gamma", "0",
            "--verify-curve", "0.1", "--out", str(out), "--index", str(built_index[0]),
            "--variants", "fixed:1+suffix", "adaptive+suffix-hybrid", "adaptive+hybrid"]
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["indexes"] == {label: str(built_index[0])
                                      for label in ("fixed:1+suffix", "adaptive+suffix-hybrid")}
    for rec in doc["prompts"]:
        for label, v in rec["variants"].items():
            assert v["match_ar"] == 1.0 and v["tokens"] == rec["ar"]["tokens"], label
        assert set(rec["variants"]["fixed:1+suffix"]["by_proposer"]) <= {"suffix"}
    assert any(rec["variants"]["fixed:1+suffix"]["by_proposer"] for rec in doc["prompts"])
    no_suffix = argv[: argv.index("--variants")] + ["--variants", "adaptive+hybrid"]
    assert engine.main(no_suffix + ["--out", str(tmp_path / "x.json")]) == 2  # --index unused


def _drafter_pass(target, drafter, prompt, tokens):
    """The drafter's teacher-forced pass along ``tokens`` (as the replay reads it)."""
    ids = torch.tensor([list(prompt) + list(tokens)])
    ids = ids.masked_fill(ids >= drafter.get_input_embeddings().num_embeddings, 256)
    with torch.no_grad():
        probs = torch.softmax(drafter(input_ids=ids).logits[0].float(), -1)
    top = probs[len(prompt) : len(prompt) + len(tokens) - 1]  # predicting tokens[1:]
    return ([int(a) == t for a, t in zip(top.argmax(-1), tokens[1:], strict=True)],
            top.max(-1).values.tolist())


@pytest.mark.parametrize("kind", ["suffix", "suffix-hybrid"])
@pytest.mark.parametrize("gamma", [3, "heuristic"])
def test_replay_of_the_suffix_proposers_equals_the_engine(noisy_pair, corpus, kind, gamma):
    """Each position's suffix draft computed once along the answer (replay.text_drafts) and
    replayed: the engine's steps, drafts, acceptances and sources, step for step (prompt
    lookup read from its precomputed drafts or looked up in the context alike)."""
    from specfair.measure.replay import replay, text_drafts

    target, drafter = noisy_pair
    index, prompts = corpus
    trees, sources = set(), set()
    policy = (lambda: HeuristicGamma(start=3, max_gamma=8)) if gamma == "heuristic" else (
        lambda: FixedGamma(3))
    for prompt in prompts:
        res = speculative_generate(target, drafter if kind == "suffix-hybrid" else None, prompt,
                                   max_new_tokens=32, gamma=policy(), proposer=kind,
                                   index=index, eos_token_id=[])  # fmt: skip
        m, q = _drafter_pass(target, drafter, prompt, res.tokens)
        pre = {"suffix": text_drafts(prompt, res.tokens, "suffix", index),
               "ngram": text_drafts(prompt, res.tokens, "ngram")}
        for kw in ({"drafts": pre}, {"drafts": {"suffix": pre["suffix"]},
                                      "context": (prompt, res.tokens)}):
            r = replay(m, q, policy(), proposer=kind, **kw)
            assert list(r.draft_sizes) == [s.drafted for s in res.steps], prompt
            assert list(r.accepted_sizes) == [s.accepted for s in res.steps], prompt
            assert list(r.sources) == [s.proposer for s in res.steps], prompt
        trees |= set(r.trees)
        sources |= {s.proposer for s in res.steps}
    assert "suffix" in sources and ("model" in sources) == (kind == "suffix-hybrid")
    assert {"index", "request"} <= trees


def test_replaying_a_suffix_proposer_needs_its_drafts():
    from specfair.measure.replay import TextDrafts, replay, text_drafts

    with pytest.raises(SpecfairError, match="suffix draft"):
        replay([True, False], [0.9, 0.1], CostAwareGamma(max_gamma=4), proposer="suffix",
               context=([1, 2], [3, 4, 5]))
    with pytest.raises(SpecfairError, match="positions"):
        replay([True, False], [0.9, 0.1], FixedGamma(2), proposer="suffix",
               drafts={"suffix": TextDrafts((1,), (1,), ("index",))})
    # a suffix step costs its verification only; no draft: a plain step
    d = text_drafts([7, 8, 9], [1, 2, 3, 4, 5], "suffix", SuffixIndex([[8, 9, 1, 2, 3, 4, 6]]))
    assert d.tree[0] == "index" and d.length[0] >= 3 and d.accepted[0] == 3
    r = replay([False] * 4, [0.1] * 4, FixedGamma(2), proposer="suffix", drafts={"suffix": d})
    assert r.sources[0] == "suffix" and r.draft_sizes[0] == 3 and r.accepted_sizes[0] == 3
    assert r.cost(0.5, 0.1) == pytest.approx(sum(1 + 0.1 * k for k in r.draft_sizes))


def test_bench_drafts_each_prompt_from_its_tasks_index(loaded_pair, tmp_path):
    from specfair.measure.bench import run_bench
    from specfair.tasks import load_suite

    target, drafter, tok = loaded_pair
    prompts = {}
    for p in load_suite("default").prompts("test"):
        prompts.setdefault(p.task, p)
    prompts = list(prompts.values())[:3]

    class Spy:  # a TaskIndex: remembers the tasks it was asked for
        asked: list = []

        def for_task(self, task):
            self.asked.append(task)
            return SuffixIndex([tok.encode(p.turns[0], add_special_tokens=False)
                                for p in prompts if p.task == task])  # fmt: skip

    spy = Spy()
    run_bench((target, None, tok), prompts, tmp_path, max_new_tokens=4, proposer="suffix",
              index=spy, warmup=False, progress=False)  # fmt: skip
    assert list(dict.fromkeys(spy.asked)) == [p.task for p in prompts]  # in the prompts' order


def test_index_build_of_the_study_suite_indexes_its_train_split(tiny_pair, tmp_path,
                                                                monkeypatch):
    """`specfair index build --suite study`: the study's tasks split as the engine benchmark
    splits them (seed 0), so no test prompt's reference is indexed."""
    from study_data import write_study_sources

    from specfair.measure.index_build import index_build_command
    from specfair.tasks.study import load_study_suite

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    m = index_build_command(str(tiny_pair[0]), "study", tmp_path / "idx")
    suite = load_study_suite(seed=0)
    assert m["suite"] == "study" and m["data_hash"] == suite.content_hash()
    train = suite.prompts("train")
    with_refs = [p for p in train if getattr(p, "reference", None)]
    assert sum(t["from"]["references"] for t in m["tasks"].values()) == len(with_refs) > 0
