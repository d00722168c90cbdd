"""``--policy`` specs: parsing, conflicts with ``--gamma``, policy tables, and the γ policy each
request gets (the adaptive one chooses sane γs from its own steps)."""

import json

import pytest

from specfair.decoding import CostAwareGamma, FixedGamma, HeuristicGamma
from specfair.decoding.policy import parse_policy, policy_table, read_policy_table
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError


@pytest.fixture
def table_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_table({"code": 7, "math": 2}, 4, split="train")))
    return path


def test_fixed_and_its_short_form():
    assert parse_policy(None).spec == f"fixed:{DEFAULT_GAMMA}"
    assert parse_policy(None, 3).spec == parse_policy("fixed:3").spec == "fixed:3"
    assert parse_policy("fixed:3", 3).gamma == 3  # agreeing --gamma is fine
    pol = parse_policy("fixed:6").for_task("any")
    assert isinstance(pol, FixedGamma) and pol.next_gamma() == 6


def test_heuristic_confidence_adaptive():
    h = parse_policy("heuristic", 4)
    assert h.spec == "heuristic" and h.draft_threshold == 0.0
    hp = h.for_task(None)
    assert isinstance(hp, HeuristicGamma) and hp.next_gamma() == 4
    c = parse_policy("confidence:0.4")
    assert c.spec == "confidence:0.4" and c.draft_threshold == 0.4
    assert c.for_task("x").next_gamma() == DEFAULT_GAMMA  # the most drafts of a step
    assert parse_policy("confidence:0.25", 9).for_task("x").next_gamma() == 9
    a = parse_policy("adaptive", 8).for_task(None)
    assert isinstance(a, CostAwareGamma) and a.max_gamma == 8


def test_table_gives_each_task_its_gamma_and_others_the_global(table_file):
    pol = parse_policy(f"table:{table_file}")
    assert [pol.for_task(t).next_gamma() for t in ("code", "math", "chat", None)] == [7, 2, 4, 4]
    assert pol.settings() == {"gamma": 4, "policy": f"table:{table_file}",
                              "policy_table": {"gamma": {"code": 7, "math": 2},
                                               "global_gamma": 4, "split": "train"}}  # fmt: skip
    assert read_policy_table(table_file) == ({"code": 7, "math": 2}, 4, "train")


@pytest.mark.parametrize(
    "spec, gamma, message",
    [
        ("fixed:5", 3, "--gamma 3 contradicts --policy fixed:5"),
        ("fixed:0", None, "must be an integer >= 1"),
        ("fixed:x", None, "must be an integer >= 1"),
        ("fixed", None, "must be an integer >= 1"),
        ("confidence:1.5", None, "confidence:T must be a number in (0, 1)"),
        ("confidence:abc", None, "confidence:T must be a number in (0, 1)"),
        ("heuristic:3", None, "expected fixed:N"),
        ("greedy", None, "expected fixed:N | heuristic"),
        ("table:", None, "expected fixed:N"),
        ("adaptive", 0, "--gamma must be an integer >= 1"),
    ],
)
def test_bad_specs(spec, gamma, message):
    with pytest.raises(SpecfairError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("|", r"\|")):  # fmt: skip
        parse_policy(spec, gamma)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not a JSON file"),
        ('{"gamma": {}, "global_gamma": 3}', "format key"),
        ('{"format": "specfair-policy", "gamma": [], "global_gamma": 3}', "'gamma' must map"),
        ('{"format": "specfair-policy", "gamma": {"a": 0}, "global_gamma": 3}', "gamma of 'a'"),
        ('{"format": "specfair-policy", "gamma": {}, "global_gamma": true}', "global_gamma"),
    ],
)
def test_bad_tables(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(SpecfairError, match=message):
        parse_policy(f"table:{path}")


def test_table_conflicts_with_gamma_and_needs_a_file(table_file, tmp_path):
    with pytest.raises(SpecfairError, match="contradicts"):
        parse_policy(f"table:{table_file}", 5)
    with pytest.raises(SpecfairError, match="no such file"):
        parse_policy(f"table:{tmp_path / 'none.json'}")


def feed(policy, accepted_fraction: float, steps: int = 30, c: float = 0.1) -> int:
    """Steps whose drafts are all accepted (1.0) or all rejected (0.0), with a drafter
    forward costing ``c`` target forwards; returns the γ chosen next."""
    for _ in range(steps):
        g = policy.next_gamma()
        policy.update(g, round(accepted_fraction * g), draft_s=c * g, verify_s=1.0)
    return policy.next_gamma()


def test_adaptive_follows_the_acceptance_of_its_own_steps():
    pol = parse_policy("adaptive", 10)
    good, bad = pol.for_task(None), pol.for_task(None)
    assert feed(good, 1.0) == 10  # everything accepted, drafts cheap: the most drafts
    assert feed(bad, 0.0) == 0  # nothing accepted: a plain step (adaptive-flat: 1 draft)
    assert feed(parse_policy("adaptive-flat", 10).for_task(None), 0.0) == 1
    assert feed(good, 0.0) < 4  # it adapts both ways, from its recent steps
    good.reset()  # a new request starts from the prior again
    assert good.next_gamma() == CostAwareGamma(max_gamma=10).next_gamma()
    # expensive drafts (c close to 1) call for fewer of them at the same acceptance
    assert feed(pol.for_task(None), 0.8, c=0.9) < feed(pol.for_task(None), 0.8, c=0.05)
