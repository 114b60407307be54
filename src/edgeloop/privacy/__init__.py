"""Privacy: pseudonyms under per-experiment keys, deterministic sampling, release rules."""

from .pseudonyms import KEY_BYTES, new_experiment_key, pseudonym
from .release import DEFAULT_K, count_noiser, suppressed
from .sampling import in_sample

__all__ = [
    "DEFAULT_K",
    "KEY_BYTES",
    "count_noiser",
    "in_sample",
    "new_experiment_key",
    "pseudonym",
    "suppressed",
]
