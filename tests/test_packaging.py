"""
setup.cfg lists its packages by hand: every package directory of the
project must be there, or an installed daemon (the sandboxd image, a
wheel) fails to import what the source tree has.
"""

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = ("agent", "sandboxd", "sandbox", "sandbox_mcp", "sbx")


def package_dirs():
    """
    Dotted names of every directory with an __init__.py under TOP.
    """
    found = set()
    for top in TOP:
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files and "__pycache__" not in directory:
                found.add(os.path.relpath(directory, ROOT).replace(os.sep, "."))
    return found


class PackagesTests(SynchronousTestCase):
    def test_everyPackageListed(self):
        """
        The packages of setup.cfg are exactly the package directories (plus
        twisted.plugins, which has no __init__.py on purpose).
        """
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        listed = set(config["options"]["packages"].split())
        self.assertEqual(listed - {"twisted.plugins"}, package_dirs())
