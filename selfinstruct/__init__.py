"""Grow a synthetic instruction-tuning dataset the Self-Instruct way."""

__version__ = "0.1.0"
