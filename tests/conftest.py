"""Shared fixtures: the read-only real samples (skipped when absent) and small phantom sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REALDATA = Path(os.environ.get(
    "CXRKIT_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` beside the checkout (or $CXRKIT_REALDATA); skips when absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real samples not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def siim_phantom(tmp_path_factory):
    """A 12-image phantom SIIM-ACR set at 96 px: (folder, what was written)."""
    from data_prep.phantom.siim_acr import generate_siim_acr

    out = tmp_path_factory.mktemp("siim")
    return out, generate_siim_acr(out, n=12, size=96, seed=3)


@pytest.fixture(scope="session")
def egd_phantom(tmp_path_factory):
    """A 9-image phantom EGD-CXR set at about 160 px rows: (folder, what was written)."""
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    out = tmp_path_factory.mktemp("egd")
    return out, generate_egd_cxr(out, n=9, size=160, seed=5)
