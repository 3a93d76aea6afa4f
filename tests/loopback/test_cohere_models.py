"""The Cohere adapters through the real cohere SDK against the fake Cohere server."""

from __future__ import annotations

import pytest

from tests.loopback.contract import ProviderContract, Vendor


@pytest.fixture
def vendor(cohere_vendor: Vendor) -> Vendor:
    return cohere_vendor


class TestCohereContract(ProviderContract):
    """The shared provider contract, for Cohere."""
