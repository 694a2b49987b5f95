"""Shared test configuration: hypothesis profiles.

``ci`` (the default): at least 100 examples per property, derandomised so that every run
checks the same cases. ``dev`` (``HYPOTHESIS_PROFILE=dev pytest``): fewer, random
examples for a quick local loop.

Markers: every test under ``tests/crosscheck/`` and ``tests/optional/`` gets the
``crosscheck`` marker here (a ``pytestmark`` in a ``conftest.py`` would not apply to the
test modules), so ``pytest -m crosscheck`` selects exactly the tests that need the
``crosscheck`` extra.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).resolve().parent
#: folders whose tests need the crosscheck extra (torch, captum, grad-cam, torchcam)
CROSSCHECK_DIRS = (TESTS / "crosscheck", TESTS / "optional")

settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, which reads the markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path)).resolve()
        if any(folder in path.parents for folder in CROSSCHECK_DIRS):
            item.add_marker(pytest.mark.crosscheck)
