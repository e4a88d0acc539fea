"""
Tests for L{tests.dockerutil}: what counts as CI, where a missing engine
fails instead of skipping.
"""

from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from tests import dockerutil


class OnCITests(SynchronousTestCase):
    def test_values(self):
        """
        CI=true, 1 and yes (any case, blanks around) are CI; anything else,
        or no CI variable, is not.
        """
        for value, expected in [("true", True), ("TRUE", True), ("1", True), (" yes ", True),
                                ("false", False), ("0", False), ("", False)]:
            self.patch(dockerutil.os, "environ", {"CI": value})
            self.assertEqual(dockerutil.on_ci(), expected, value)
        self.patch(dockerutil.os, "environ", {})
        self.assertFalse(dockerutil.on_ci())

    def test_missingFailsUnderCI(self):
        """
        Under CI a missing requirement fails the test; elsewhere it skips.
        """
        self.patch(dockerutil.os, "environ", {"CI": "1"})
        self.assertRaises(FailTest, dockerutil.missing, "no engine")
        self.patch(dockerutil.os, "environ", {})
        self.assertRaises(SkipTest, dockerutil.missing, "no engine")
