from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture
def data():
    return DATA


def needs_shared(sub: str = "") -> Path:
    p = SHARED / sub
    if not p.exists():
        pytest.skip(f"{p} is absent (the shared data sets are not in a fresh clone)")
    return p
