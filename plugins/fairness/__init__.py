"""Fairness (F): group-fairness metrics and the adversarial-debiasing defense (FD1)."""
