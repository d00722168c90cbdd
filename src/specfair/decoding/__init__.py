"""Lossless, instrumented speculative decoding and its autoregressive baseline.

Public API (shapes in docs/CONTRACTS.md):

- ``speculative_generate``, ``autoregressive_generate`` -> ``GenerationResult`` (``StepRecord``)
- gamma policies: ``FixedGamma``, ``HeuristicGamma``, ``CostAwareGamma``,
  ``VerifyAwareGamma`` (``GammaPolicy``);
  ``parse_policy`` (a ``--policy`` spec -> ``DraftingPolicy``)
- proposers (``speculative_generate(proposer=)``): the drafter, ``ngram_match`` prompt lookup
- pure functions: ``sampling`` (logits -> probabilities -> tokens), ``rejection`` (verification
  of a block of drafts), ``theory`` (Leviathan et al. formulas).
"""

from specfair.decoding.gamma import (
    CostAwareGamma,
    FixedGamma,
    GammaPolicy,
    HeuristicGamma,
    VerifyAwareGamma,
)
from specfair.decoding.generate import autoregressive_generate, speculative_generate
from specfair.decoding.ngram import PROPOSERS, ngram_match, parse_proposer
from specfair.decoding.policy import DraftingPolicy, parse_policy
from specfair.decoding.rejection import (
    acceptance_probs,
    greedy_verify,
    next_token_distribution,
    rejection_sample,
    residual_distribution,
)
from specfair.decoding.result import GenerationResult, StepRecord
from specfair.decoding.sampling import SamplingParams, fit_vocab, logits_to_probs, sample
from specfair.decoding.theory import (
    alpha_from_tau,
    alpha_geometric,
    expected_speedup,
    expected_tokens_per_step,
    optimal_gamma,
)

__all__ = [
    "PROPOSERS",
    "CostAwareGamma",
    "DraftingPolicy",
    "FixedGamma",
    "GammaPolicy",
    "GenerationResult",
    "HeuristicGamma",
    "SamplingParams",
    "StepRecord",
    "VerifyAwareGamma",
    "acceptance_probs",
    "alpha_from_tau",
    "alpha_geometric",
    "autoregressive_generate",
    "expected_speedup",
    "expected_tokens_per_step",
    "fit_vocab",
    "greedy_verify",
    "logits_to_probs",
    "next_token_distribution",
    "ngram_match",
    "optimal_gamma",
    "parse_policy",
    "parse_proposer",
    "rejection_sample",
    "residual_distribution",
    "sample",
    "speculative_generate",
]
