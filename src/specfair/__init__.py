"""specfair: measure and fix the disparate speed-ups of speculative decoding."""

__version__ = "0.1.0"
