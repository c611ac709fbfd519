"""Evasion (S1): attacks, defenses and metrics."""
