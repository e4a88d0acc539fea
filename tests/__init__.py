"""
The test suite (run with trial: ``make test``).

Hypothesis runs derandomized under CI (the same examples every run, so a
failure there is reproducible and never a coin toss), randomized elsewhere.
"""

from hypothesis import settings

from tests.dockerutil import on_ci

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if on_ci() else "dev")
