"""Poisoning (S2): the BadNets backdoor attack, its metrics, and the outlier-removal defense (SD2)."""
