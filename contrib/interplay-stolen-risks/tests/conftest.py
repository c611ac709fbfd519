"""Test set-up: real data sets come from ``INTERPLAY_DATA``, else from ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
if SHARED_DATA.is_dir() and not os.environ.get("INTERPLAY_DATA"):
    os.environ["INTERPLAY_DATA"] = str(SHARED_DATA)
