"""Where the reference's golden files live: $IIRSNN_GOLDEN_DIR, else ../shared/golden beside the checkout."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(os.environ.get("IIRSNN_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


def golden_path(name: str) -> Path:
    """Path of a golden file; skips the test when it is absent, except in CI where its absence is an error."""
    path = GOLDEN_DIR / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"golden file {path} missing in CI (set IIRSNN_GOLDEN_DIR)")
        pytest.skip(f"golden file {path} not present")
    return path
