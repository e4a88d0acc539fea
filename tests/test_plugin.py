"""
Tests for the twistd plugin (twisted/plugins/sandboxd_plugin.py) and the
options of L{sandboxd.tap}.
"""

import os
import sys

from twisted.application.service import IServiceMaker
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import TestCase

from sandboxd.config import ENVIRONMENT_OVERRIDES, Config


def find_plugin():
    for plugin in getPlugins(IServiceMaker):
        if plugin.tapname == "sandboxd":
            return plugin
    return None


class PluginTests(TestCase):
    """
    C{twistd sandboxd} finds the plugin and its options.
    """

    def setUp(self):
        # load_config reads os.environ itself: hide any SANDBOX_* overrides
        # of the environment running the tests.
        for variable in ENVIRONMENT_OVERRIDES:
            if variable in os.environ:
                self.addCleanup(os.environ.__setitem__, variable, os.environ.pop(variable))

    def test_discovered(self):
        """
        C{sandboxd} is among the IServiceMaker plugins, with a description
        and the tap module's C{makeService}.
        """
        plugin = find_plugin()
        self.assertIsNotNone(plugin, "no sandboxd plugin in twisted.plugins")
        self.assertTrue(plugin.description)
        from sandboxd import tap

        self.assertIs(plugin.options, tap.Options)
        self.assertIs(plugin.makeService, tap.makeService)

    def test_gateway_discovered(self):
        """
        C{sandboxd-gateway} is a plugin too, with the gateway's tap module.
        """
        from sandboxd.gateway import tap

        found = [p for p in getPlugins(IServiceMaker) if p.tapname == "sandboxd-gateway"]
        self.assertEqual(len(found), 1)
        self.assertIs(found[0].options, tap.Options)
        self.assertIs(found[0].makeService, tap.makeService)

    async def test_discoveredOutsideSourceTree(self):
        """
        A Python started outside the source tree, as twistd is in
        production, finds the plugin too: the installed package puts
        C{sandboxd_plugin.py} where C{twisted.plugins} looks (not only the
        checkout this test runs from).
        """
        directory = self.mktemp()
        os.mkdir(directory)
        script = (
            "from twisted.application.service import IServiceMaker\n"
            "from twisted.plugin import getPlugins\n"
            "print(' '.join(p.tapname for p in getPlugins(IServiceMaker)))\n"
        )
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", script], env=dict(os.environ), path=directory
        )
        self.assertEqual(code, 0, err)
        self.assertIn("sandboxd", out.decode().split(), "twistd would not find sandboxd")

    def test_defaults(self):
        """
        Parsing no arguments loads the built-in configuration.
        """
        options = find_plugin().options()
        options.parseOptions([])
        self.assertIsNone(options["config"])
        self.assertEqual(options["loaded"], Config())

    def test_configFile(self):
        """
        C{--config PATH} loads that TOML file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[server]\nsocket = "/tmp/x.sock"\n')
        options = find_plugin().options()
        options.parseOptions(["--config", path])
        self.assertEqual(options["loaded"].server.socket, "/tmp/x.sock")
        self.assertEqual(options["loaded"].pool, Config().pool)

    def test_missingConfigFile(self):
        """
        A C{--config} file that does not exist is a UsageError naming it.
        """
        path = self.mktemp()
        e = self.assertRaises(
            usage.UsageError, find_plugin().options().parseOptions, ["--config", path]
        )
        self.assertIn(path, str(e))

    def test_badTOML(self):
        """
        A C{--config} file that is not valid TOML is a UsageError naming it.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[server\nsocket = \n")
        e = self.assertRaises(
            usage.UsageError, find_plugin().options().parseOptions, ["-c", path]
        )
        self.assertIn(path, str(e))
        self.assertIn("TOML", str(e))
