"""Model loading: short names of the offline pair, HF ids, local directories, GGUF files."""

from specfair.models.load import (
    Pair,
    load_model,
    load_pair,
    load_tokenizer,
    resolve_dtype,
    resolve_source,
)
from specfair.models.registry import DEFAULT_DRAFTER, DEFAULT_TARGET, KNOWN_MODELS, cache_root
from specfair.models.tokenizers import check_tokenizers_match

__all__ = [
    "DEFAULT_DRAFTER",
    "DEFAULT_TARGET",
    "KNOWN_MODELS",
    "Pair",
    "cache_root",
    "check_tokenizers_match",
    "load_model",
    "load_pair",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_source",
]
