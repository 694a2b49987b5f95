"""Shared test configuration: hypothesis profiles.

``ci`` (the default): at least 100 examples per property, derandomised so that every run
checks the same cases. ``dev`` (``HYPOTHESIS_PROFILE=dev pytest``): fewer, random
examples for a quick local loop.
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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
