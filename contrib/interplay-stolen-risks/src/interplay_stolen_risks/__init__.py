"""interplay-stolen-risks: model stealing against models trained with security properties.

The plugins of "Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023) for
interplay: the paper's datasets, model-stealing (S3) attacks and their metrics, published as a
separate distribution that registers through the ``interplay`` entry-point group and uses only
interplay's public API. Listing plugins reads :mod:`interplay_stolen_risks.manifest` alone;
implementations are imported the first time a plugin is used.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.2.0"
