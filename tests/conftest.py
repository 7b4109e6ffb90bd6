"""Shared fixtures."""

import pytest
from netgen import perturbed

import pymicro


@pytest.fixture(scope="session", params=pymicro.PRESETS)
def preset_blob(request) -> bytes:
    return pymicro.freeze(perturbed(pymicro.preset(request.param)))
