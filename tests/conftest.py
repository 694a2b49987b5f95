"""Shared test configuration: hypothesis profiles.

``ci`` (used when the environment variable CI is set, and selectable with
``--hypothesis-profile=ci``): at least 100 examples per property, derandomised so a
run is reproducible. ``dev``: fewer examples for a quick local loop.
"""

import os

from hypothesis import HealthCheck, settings

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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
