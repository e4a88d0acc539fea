"""
Tests for L{sandboxd.runtimes._firewall}: the iptables commands that keep
sandboxes from connecting to the host, against a fake iptables.
(tests/test_runtime_docker.py proves the real rules with a real sandbox.)
"""

from twisted.internet.defer import succeed
from twisted.trial.unittest import TestCase

from sandboxd.runtimes._firewall import (
    CHAIN,
    FirewallError,
    HostFirewall,
    bridge_interface,
    rules,
)


class FakeIptables:
    """
    Keeps chains of rules and answers -N, -C, -A, -I and -D like iptables.
    """

    def __init__(self):
        self.chains = {"INPUT": []}
        self.calls = []
        self.refuse = False

    def __call__(self, args):
        self.calls.append(args)
        op, chain, rule = args[0], args[1], args[2:]
        if self.refuse and op in ("-A", "-I", "-N"):
            return succeed((b"", b"Permission denied (you must be root)", 4))
        if op == "-N":
            if chain in self.chains:
                return succeed((b"", b"iptables: Chain already exists.", 1))
            self.chains[chain] = []
            return succeed((b"", b"", 0))
        rules = self.chains.get(chain)
        if rules is None:
            return succeed((b"", b"No chain/target/match by that name.", 1))
        if op == "-C":
            return succeed((b"", b"", 0 if rule in rules else 1))
        if op == "-A":
            rules.append(rule)
        elif op == "-I":
            rules.insert(int(rule[0]) - 1, rule[1:])
        elif op == "-D":
            rules.remove(rule)
        return succeed((b"", b"", 0))


class HostFirewallTests(TestCase):
    def setUp(self):
        self.iptables = FakeIptables()
        self.firewall = HostFirewall(None, run=self.iptables)

    async def test_isolate(self):
        """
        isolate() makes the chain, accepts only answers from the bridge and
        drops the rest, and jumps to the chain from the top of INPUT.
        """
        self.iptables.chains["INPUT"].append(["-j", "ACCEPT"])
        await self.firewall.isolate("br-1")
        self.assertEqual(
            self.iptables.chains[CHAIN],
            [
                ["-i", "br-1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                 "-j", "ACCEPT"],
                ["-i", "br-1", "-j", "DROP"],
            ],
        )
        self.assertEqual(self.iptables.chains["INPUT"], [["-j", CHAIN], ["-j", "ACCEPT"]])

    async def test_idempotent(self):
        """
        A second isolate(), e.g. by a restarted daemon, adds nothing; another
        bridge gets its own rules.
        """
        await self.firewall.isolate("br-1")
        await self.firewall.isolate("br-1")
        await self.firewall.isolate("br-2")
        self.assertEqual(len(self.iptables.chains[CHAIN]), 4)
        self.assertEqual(self.iptables.chains["INPUT"], [["-j", CHAIN]])

    async def test_release(self):
        """
        release() removes one bridge's rules only.
        """
        await self.firewall.isolate("br-1")
        await self.firewall.isolate("br-2")
        await self.firewall.release("br-1")
        self.assertEqual(self.iptables.chains[CHAIN], rules("br-2"))
        await self.firewall.release("br-1")  # again: nothing to do

    async def test_refused(self):
        """
        iptables refusing (not root) is a FirewallError quoting it.
        """
        self.iptables.refuse = True
        with self.assertRaises(FirewallError) as caught:
            await self.firewall.isolate("br-1")
        self.assertIn("Permission denied", str(caught.exception))

    async def test_missing_binary(self):
        """
        No iptables at all is a FirewallError naming it.
        """

        def missing(args):
            raise FileNotFoundError(2, "No such file or directory")

        firewall = HostFirewall(None, run=missing, binary="iptables")
        with self.assertRaises(FirewallError) as caught:
            await firewall.isolate("br-1")
        self.assertIn("iptables", str(caught.exception))

    def test_bridge_interface(self):
        """
        The bridge's interface: its name option, else br- and the id's first
        12 characters.
        """
        self.assertEqual(bridge_interface({"Id": "0123456789abcdef", "Options": {}}),
                         "br-0123456789ab")
        self.assertEqual(
            bridge_interface({"Id": "x", "Options": {"com.docker.network.bridge.name": "sbx0"}}),
            "sbx0",
        )
