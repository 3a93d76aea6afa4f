"""The OpenAI adapters through the real openai SDK against the fake OpenAI server."""

from __future__ import annotations

import pytest

from tests.loopback.contract import ProviderContract, Vendor


@pytest.fixture
def vendor(openai_vendor: Vendor) -> Vendor:
    return openai_vendor


class TestOpenAIContract(ProviderContract):
    """The shared provider contract, for OpenAI."""
