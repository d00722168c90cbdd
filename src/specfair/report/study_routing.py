"""The report's task-routing section, from ``routing.json`` (:mod:`specfair.study.routing`
computes every number): the task router's accuracy per task and where each task's prompts
went, the copy × task greedy-alpha matrix (what a wrong route costs), routed against oracle
routing per task with paired CIs, the cost of each wrong route taken, and whether routed alpha
is within the tolerance of oracle routing. Nothing here computes a statistic."""

from __future__ import annotations

from specfair.report.doc import Block, Bullets, Heading, Para, Table

NAMES = {"greedy": "greedy alpha", "alpha": "sampled alpha (upper bound)",
         "speedup": "predicted speed-up"}


def _ci(ci: dict, nd: int = 4) -> str:
    return f"{ci['value']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"


def routing_answer(r: dict) -> list[str]:
    """Per alpha metric: routed − oracle over the task mean and whether it lies within the
    tolerance (the point; the CI as well or not); the predicted speed-up's change."""
    tol, out = r["tolerance"], []
    for m in ("greedy", "alpha"):
        d, w = r["change"][m]["mean"], r["within"][m]
        if w["value"]:
            verdict = (f"is within {tol} of oracle routing" + (
                f" (its 95% CI lies within ±{tol} as well)" if w["ci"] else
                f" (its 95% CI reaches beyond ±{tol})"))
        else:
            verdict = (f"is not within {tol} of oracle routing: the cost of each wrong route "
                       "is in the tables below")
        out.append(f"Routed {NAMES[m]} {verdict}; routed − oracle, mean over tasks: {_ci(d)} "
                   "(paired 95% CI).")
    out.append(f"Predicted speed-up, routed − oracle, mean over tasks: "
               f"{_ci(r['change']['speedup']['mean'], 3)}.")
    return out


def routing_blocks(r: dict, tasks: list[str]) -> list[Block]:
    clf = r.get("train") or {}
    acc = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    blocks: list[Block] = [
        Heading("Task routing"),
        Para(f"Without a task label the per-task drafter drafts each prompt with the copy a task "
             f"router picks (logistic regression on the base drafter's mean hidden state of "
             f"the prompt, fitted on {clf.get('n', '?')} train prompts, train accuracy "
             f"{acc(clf.get('accuracy'))}); below probability {r['threshold']} it falls back to "
             f"the base drafter. Oracle routing drafts each prompt with its own task's copy. "
             f"On {r['n']} test prompts the router's accuracy is {acc(r['accuracy'])} and "
             f"{acc(r['routing_accuracy'])} reach their own copy. Every copy (largest budget, "
             "first seed) and the base drafter are teacher-forced on every task's test "
             "sequences (`routing/eval.jsonl`); routed alpha takes each prompt's pass from the "
             "copy its route picked."),
        Bullets(routing_answer(r))]
    rows = []
    for t in tasks:
        d = r["tasks"].get(t)
        if d:
            went = ", ".join(f"{c} {n}" for c, n in sorted(r["routes"][t].items(),
                                                          key=lambda x: -x[1]))
            rows.append([t, str(d["n"]), acc(d["accuracy"]), acc(d["routing_accuracy"]),
                         acc(d["base_share"]), went])
    blocks.append(Table(["task", "test prompts", "accuracy", "to its own copy", "to the base",
                         "routed to (prompts)"], rows,
                        "The task router on the test split: accuracy (its most probable task), "
                        "the share routed to the task's own copy and to the base drafter",
                        ["l", "r", "r", "r", "r", "l"]))
    mat = r["matrix"]["greedy"]
    copies = [c for c in mat if c in tasks] + [c for c in mat if c not in tasks]
    blocks.append(Table(
        ["copy / prompts of", *tasks],
        [[c, *(("**" if c == t else "") + acc(mat[c].get(t)) + ("**" if c == t else "")
               for t in tasks)] for c in copies],
        "Greedy alpha of each per-task copy (rows; base: the base drafter) on each task's test "
        "prompts (columns); the diagonal (bold) is oracle routing, the rest of a column what "
        "routing that task's prompts to another copy gives", ["l"] + ["r"] * len(tasks)))
    rows = [[t, NAMES[m], f"{r['oracle'][m][t]:.{nd}f}", f"{r['routed'][m][t]:.{nd}f}",
             _ci(r["change"][m][t], nd)]
            for t in [*tasks, "mean"] for m, nd in (("greedy", 4), ("alpha", 4), ("speedup", 3))]
    blocks.append(Table(
        ["task", "metric", "oracle", "routed", "routed − oracle [95% CI]"], rows,
        "Routed against oracle routing per task (mean: over tasks), on the same test prompts "
        "(paired 95% bootstrap CI over prompt groups)", ["l", "l", "r", "r", "r"]))
    if wrong := r.get("wrong_routes"):
        blocks.append(Table(
            ["task", "routed to", "prompts", "greedy alpha change", "sampled alpha change"],
            [[w["task"], w["copy"], str(w["n"]), f"{w['d_greedy']:+.4f}",
              f"{w['d_alpha']:+.4f}"] for w in wrong],
            "The wrong routes taken: each one's prompts and their mean change against their "
            "own task's copy", ["l", "l", "r", "r", "r"]))
    else:
        blocks.append(Para("No test prompt was routed away from its own task's copy.",
                           kind="note"))
    return blocks
