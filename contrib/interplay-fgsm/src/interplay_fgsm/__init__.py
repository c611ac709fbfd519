"""interplay-fgsm: the Fast Gradient Sign Method as an interplay evasion (S1) attack.

The attack is the one-step L-infinity attack of Goodfellow, Shlens and Szegedy,
"Explaining and Harnessing Adversarial Examples", ICLR 2015::

    x_adv = clip(x + eps * sign(grad_x loss(f(x), y)), clip_min, clip_max)

interplay discovers it through this distribution's ``interplay`` entry point
(:mod:`interplay_fgsm.manifest`); listing plugins reads that manifest only. Importing
this package is cheap: :class:`FGSM` (and with it torch) is imported on first access.

Examples:
    >>> import interplay
    >>> interplay.get_registry().get("fgsm").distribution
    'interplay-fgsm'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .attack import FGSM

__all__ = ["FGSM", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "FGSM":
        from .attack import FGSM

        return FGSM
    raise AttributeError(f"module 'interplay_fgsm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "FGSM"})
