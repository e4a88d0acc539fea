"""
Tests for L{sandboxd.capacity}: the daemon-wide count, memory and CPU caps.
"""

import attr
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.capacity import AtCapacity, Capacity
from sandboxd.config import parse_config


@attr.s(auto_attribs=True)
class _Sandbox:
    memory: int
    cpu: float


def _capacity(text):
    return Capacity(parse_config("[limits]\n" + text).limits)


class CapacityTests(SynchronousTestCase):
    def test_count(self):
        """
        limits.max_sandboxes handed-out sandboxes leave room for no more.
        """
        capacity = _capacity("max_sandboxes = 2\n")
        capacity.check([_Sandbox(1, 1.0)], 1, 1.0)
        with self.assertRaises(AtCapacity) as caught:
            capacity.check([_Sandbox(1, 1.0)] * 2, 1, 1.0)
        self.assertIn("limits.max_sandboxes", str(caught.exception))

    def test_total_memory(self):
        """
        The memory limits of the sandboxes, plus the new one, stay within
        limits.max_total_memory; the refusal names it.
        """
        capacity = _capacity('max_total_memory = "1g"\n')
        half = 512 << 20
        capacity.check([_Sandbox(half, 1.0)], half, 1.0)
        with self.assertRaises(AtCapacity) as caught:
            capacity.check([_Sandbox(half, 1.0)], half + 1, 1.0)
        self.assertIn("limits.max_total_memory", str(caught.exception))

    def test_total_cpu(self):
        """
        The CPUs, summed, stay within limits.max_total_cpu (a sum of
        fractions that exactly fills it is allowed).
        """
        capacity = _capacity("max_total_cpu = 0.3\n[pool.base.default]\ncpu = 0.1\n")
        capacity.check([_Sandbox(1, 0.1), _Sandbox(1, 0.1)], 1, 0.1)
        with self.assertRaises(AtCapacity) as caught:
            capacity.check([_Sandbox(1, 0.1), _Sandbox(1, 0.1)], 1, 0.2)
        self.assertIn("limits.max_total_cpu", str(caught.exception))

    def test_zero_is_no_total(self):
        """
        With the defaults (0), only the count limits.
        """
        capacity = _capacity("max_sandboxes = 1000\n")
        capacity.check([_Sandbox(4 << 30, 4.0)] * 500, 4 << 30, 4.0)

    def test_profile_above_total_is_a_config_error(self):
        """
        A profile that could never fit within the totals fails the config.
        """
        from sandboxd.config import ConfigError

        with self.assertRaises(ConfigError) as caught:
            parse_config('[limits]\nmax_total_memory = "256m"\n')
        self.assertIn("limits.max_total_memory", str(caught.exception))
        with self.assertRaises(ConfigError):
            parse_config("[limits]\nmax_total_cpu = 0.5\n")
