"""
Unit tests of egress policies (sandboxd/egress/policy.py), the iptables
chains that enforce them against a fake iptables (firewall.py), the guard
that applies them (guard.py) and the secret vault (secrets.py).  The real
rules against real sandboxes: tests/test_e2e_egress.py.
"""

import ipaddress
import shlex

from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sandboxd.egress.firewall import (
    CHAIN,
    DOCKER_USER,
    EgressFirewall,
    chain_rules,
    chain_stem,
)
from sandboxd.egress.guard import EgressFailed, EgressGuard, NetworkUnsupported, host_nameservers
from sandboxd.egress.policy import NetworkPolicy, Rule, parse_network
from sandboxd.egress.proxy import local_addresses, may_resolve, permitted
from sandboxd.egress.secrets import SecretVault, parse_secrets
from sandboxd.runtimes._firewall import FirewallError


class PolicyTests(SynchronousTestCase):
    def test_written_forms(self):
        """
        "open", "none" and {allow: [...]} parse; every entry kind keeps its
        written form in toJSON; host entries ask for DNS, addresses do not.
        """
        self.assertTrue(parse_network("open").is_open)
        self.assertEqual("none", parse_network("none").toJSON())
        entries = ["10.1.2.3", "10.1.2.3:443", "10.0.0.0/8", "10.0.0.0/8:53",
                   "api.example.com:443", "Example.COM"]
        policy = parse_network({"allow": entries})
        self.assertEqual({"allow": entries[:5] + ["example.com"]}, policy.toJSON())
        self.assertEqual(Rule(network="10.0.0.0/8", port=53), policy.rules[3])
        self.assertTrue(policy.needs_dns)
        self.assertFalse(parse_network({"allow": ["10.0.0.1:80"]}).needs_dns)
        self.assertEqual(policy, parse_network(policy.toJSON()))

    def test_bad_forms(self):
        """
        Each malformed policy is a ValueError saying what is wrong.
        """
        for bad, words in [("closed", "not a network policy"), ({"deny": []}, "one key"),
                           ({"allow": "x"}, "array of strings"), (3, "open"),
                           ({"allow": ["1.2.3.4:0"]}, "port"),
                           ({"allow": ["h:70000"]}, "port"),
                           ({"allow": ["::1"]}, "IPv6"), ({"allow": ["1.2.3.999"]}, "IPv4"),
                           ({"allow": ["bad_host!"]}, "host name"),
                           ({"allow": ["10.0.0.1"] * 65}, "at most")]:
            with self.assertRaises(ValueError) as caught:
                parse_network(bad)
            self.assertIn(words, str(caught.exception))

    def test_chain_rules(self):
        """
        The chain RETURNs established traffic, the allowed destinations
        (tcp and udp for a port) and DNS to the resolvers, then REJECTs
        the rest; "none" is only the rejects.
        """
        rules = chain_rules([("10.0.0.0/8", None), ("10.1.1.1/32", 80)], ["192.0.2.53"])
        self.assertEqual(["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
                         rules[0])
        self.assertIn(["-d", "10.0.0.0/8", "-j", "RETURN"], rules)
        self.assertIn(["-d", "10.1.1.1/32", "-p", "udp", "--dport", "80", "-j", "RETURN"], rules)
        self.assertIn(["-d", "192.0.2.53/32", "-p", "udp", "--dport", "53", "-j", "RETURN"],
                      rules)
        self.assertEqual("REJECT", rules[-1][rules[-1].index("-j") + 1])
        self.assertEqual(2, len(chain_rules([])))

    def test_nameservers(self):
        """
        The host's non-loopback resolvers; Docker's defaults when only
        loopback ones (or none) are listed.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver fe80::1\n")
        self.assertEqual(("192.0.2.1",), host_nameservers(path))
        with open(path, "w") as f:
            f.write("nameserver 127.0.0.53\n")
        self.assertEqual(("8.8.8.8", "8.8.4.4"), host_nameservers(path))


class FakeIptables:
    """
    Chains of rules answering -N -F -X -A -I -D -C -S like iptables.
    """

    def __init__(self):
        self.chains = {DOCKER_USER: [["-j", "RETURN"]], "FORWARD": []}
        self.refuse = False

    def __call__(self, args):
        op, rest = args[0], args[1:]
        if self.refuse and op in ("-A", "-I", "-N"):
            return succeed((b"", b"Permission denied (you must be root)", 4))
        if op == "-S":
            names = rest or list(self.chains)
            lines = []
            for name in names:
                if name not in self.chains:
                    return succeed((b"", b"No chain/target/match by that name.", 1))
                if name not in (DOCKER_USER, "FORWARD"):
                    lines.append(f"-N {name}")
                lines += [f"-A {name} " + shlex.join(rule) for rule in self.chains[name]]
            return succeed(("\n".join(lines).encode(), b"", 0))
        chain, rule = rest[0], rest[1:]
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
            if rule not in rules:
                return succeed((b"", b"Bad rule", 1))
            rules.remove(rule)
        elif op == "-F":
            rules.clear()
        elif op == "-X":
            del self.chains[chain]
        return succeed((b"", b"", 0))

    def ours(self):
        return sorted(name for name in self.chains if name.startswith("SBXE-"))


class FirewallTests(TestCase):
    def setUp(self):
        self.iptables = FakeIptables()
        self.firewall = EgressFirewall(None, run=self.iptables)

    async def test_apply_replace_remove(self):
        """
        apply makes the jump from DOCKER-USER (once), a chain for the
        sandbox and its jump keyed by address; a second apply replaces
        chain and jump (never two); remove leaves nothing of the sandbox.
        """
        await self.firewall.apply("sbx-1", "172.18.0.5", chain_rules([]))
        await self.firewall.apply("sbx-1", "172.18.0.5", chain_rules([("10.0.0.0/8", 80)]))
        self.assertEqual(["-j", CHAIN], self.iptables.chains[DOCKER_USER][0])
        self.assertEqual(2, len(self.iptables.chains[DOCKER_USER]))
        [chain] = self.iptables.ours()
        self.assertTrue(chain.startswith(chain_stem("sbx-1")))
        self.assertEqual(chain_rules([("10.0.0.0/8", 80)]), self.iptables.chains[chain])
        [jump] = self.iptables.chains[CHAIN]
        self.assertEqual(["-s", "172.18.0.5/32"], jump[:2])
        self.assertEqual(chain, jump[-1])
        await self.firewall.remove("sbx-1")
        self.assertEqual([], self.iptables.ours())
        self.assertEqual([], self.iptables.chains[CHAIN])

    async def test_sweep_keeps_only_the_given(self):
        """
        sweep removes the jumps and chains of every sandbox of this daemon
        not kept, and its chains no jump leads to; another daemon's rules
        (another owner sharing the bridge) stay.
        """
        for n in range(3):
            await self.firewall.apply(f"sbx-{n}", f"172.18.0.{n + 2}", chain_rules([]))
        self.iptables.chains[chain_stem("sbx-9") + "-dead"] = []
        other = EgressFirewall(None, owner="/other", run=self.iptables)
        await other.apply("sbx-0", "172.18.0.20", chain_rules([]))
        await self.firewall.sweep(["sbx-1"])
        self.assertEqual(2, len(self.iptables.ours()))
        self.assertTrue(any(c.startswith(chain_stem("sbx-1")) for c in self.iptables.ours()))
        self.assertTrue(any(c.startswith(chain_stem("sbx-0", "/other"))
                            for c in self.iptables.ours()))
        self.assertEqual(2, len(self.iptables.chains[CHAIN]))

    async def test_stale_rules_of_an_address_go(self):
        """
        A jump left for the same address by an earlier sandbox (another
        daemon's, its container gone) is removed with its chain when a new
        sandbox at that address gets its rules; other addresses' stay.
        """
        other = EgressFirewall(None, owner="/dead-daemon", run=self.iptables)
        await other.apply("sbx-old", "172.18.0.5", chain_rules([]))
        await other.apply("sbx-near", "172.18.0.6", chain_rules([]))
        await self.firewall.apply("sbx-new", "172.18.0.5", chain_rules([("10.0.0.0/8", None)]))
        jumps = self.iptables.chains[CHAIN]
        self.assertEqual(2, len(jumps))
        self.assertEqual({("172.18.0.5/32", chain_stem("sbx-new")),
                          ("172.18.0.6/32", chain_stem("sbx-near", "/dead-daemon"))},
                         {(jump[1], jump[-1][:len(chain_stem("x"))]) for jump in jumps})
        self.assertEqual(2, len(self.iptables.ours()))

    async def test_refused_is_named(self):
        """
        iptables refusing is a FirewallError quoting it.
        """
        self.iptables.refuse = True
        with self.assertRaises(FirewallError) as caught:
            await self.firewall.apply("sbx-1", "172.18.0.5", chain_rules([]))
        self.assertIn("Permission denied", str(caught.exception))


class FakeStore:
    def __init__(self):
        self.recorded = {}

    def putNetwork(self, sandbox_id, policy):
        self.recorded[sandbox_id] = policy

    def networks(self):
        return dict(self.recorded)


class FakeSandbox:
    def __init__(self, id, address="172.18.0.9", runtime="docker"):
        self.id, self.address, self.runtime, self.network = id, address, runtime, None
        self.secret_names = ()


class GuardTests(TestCase):
    def setUp(self):
        self.iptables = FakeIptables()
        self.store = FakeStore()
        self.resolved = {"api.example.com": ["192.0.2.10", "192.0.2.11"]}

        def resolve(host):
            return succeed(self.resolved.get(host, []))

        self.guard = EgressGuard(None, EgressFirewall(None, run=self.iptables), self.store,
                                 resolve=resolve, nameservers=("192.0.2.53",))

    async def test_host_names_resolved_and_dns_allowed(self):
        """
        A host entry becomes one rule per address it resolves to, DNS to
        the resolvers is allowed, and the policy is recorded.
        """
        sandbox = FakeSandbox("sbx-a")
        policy = parse_network({"allow": ["api.example.com:443"]})
        await self.guard.apply(sandbox, policy)
        [chain] = self.iptables.ours()
        rules = self.iptables.chains[chain]
        for address in self.resolved["api.example.com"]:
            self.assertIn(["-d", f"{address}/32", "-p", "tcp", "--dport", "443", "-j", "RETURN"],
                          rules)
        self.assertIn(["-d", "192.0.2.53/32", "-p", "udp", "--dport", "53", "-j", "RETURN"], rules)
        self.assertEqual({"sbx-a": {"network": {"allow": ["api.example.com:443"]}, "secrets": []}},
                         self.store.recorded)
        self.assertIs(policy, sandbox.network)

    async def test_unresolvable_fails_by_name(self):
        """
        A host that resolves to nothing is EgressFailed naming it; no rule is left.
        """
        with self.assertRaises(EgressFailed) as caught:
            await self.guard.apply(FakeSandbox("sbx-b"), parse_network({"allow": ["nowhere.test"]}))
        self.assertIn("nowhere.test", str(caught.exception))
        self.assertEqual([], self.iptables.ours())

    async def test_open_makes_no_rules(self):
        """
        open: no chain, nothing recorded.
        """
        await self.guard.apply(FakeSandbox("sbx-c"), parse_network("open"))
        self.assertEqual([], self.iptables.ours())
        self.assertEqual({}, self.store.recorded)

    def test_vm_refuses_allow_lists(self):
        """
        An allow list on a VM runtime (no network device) is NetworkUnsupported;
        none and open are accepted.
        """
        with self.assertRaises(NetworkUnsupported):
            EgressGuard.check(parse_network({"allow": ["10.0.0.1"]}), "qemu")
        EgressGuard.check(parse_network("none"), "qemu")
        EgressGuard.check(parse_network({"allow": ["10.0.0.1"]}), "docker+gvisor")

    async def test_adopt_restores_and_sweeps(self):
        """
        After a restart the recorded policies of adopted sandboxes are
        applied again and every other sandbox's rules are swept; a policy
        that cannot be restored falls back to none (fail closed).
        """
        await self.guard.apply(FakeSandbox("sbx-gone"), parse_network("none"))
        self.store.recorded["sbx-kept"] = {"network": {"allow": ["10.0.0.0/8"]}, "secrets": []}
        self.store.recorded["sbx-lost"] = {"network": {"allow": ["api.example.com"]},
                                           "secrets": []}
        self.resolved.clear()
        kept, lost = FakeSandbox("sbx-kept", "172.18.0.3"), FakeSandbox("sbx-lost", "172.18.0.4")
        await self.guard.adopt([kept, lost])
        stems = {chain[:len(chain_stem("x"))] for chain in self.iptables.ours()}
        self.assertEqual({chain_stem("sbx-kept"), chain_stem("sbx-lost")}, stems)
        self.assertEqual(NetworkPolicy("allow", (Rule(network="10.0.0.0/8"),)), kept.network)
        self.assertEqual("none", lost.network.mode)


class SecretTests(SynchronousTestCase):
    def test_parse(self):
        """
        NAME: value and NAME: {value, hosts} parse; a bad entry is a
        ValueError that names the secret and never quotes its value.
        """
        specs = parse_secrets({"A": "v1", "B": {"value": "v2", "hosts": ["API.example.com"]}})
        self.assertEqual(("api.example.com",), specs["B"].hosts)
        self.assertNotIn("v1", repr(specs))
        for bad in ({"A": "x\r\nInjected: 1"}, {"A": ""}, {"A": {"value": "hunter2", "hosts": 3}},
                    {"1A": "hunter2"}, {"A": {"value": "hunter2", "other": 1}}):
            with self.assertRaises(ValueError) as caught:
                parse_secrets(bad)
            self.assertNotIn("hunter2", str(caught.exception))
            self.assertNotIn("Injected", str(caught.exception))

    def test_substitute_only_for_bound_hosts(self):
        """
        Placeholders are random per sandbox; a bound secret replaces its
        placeholder only for its hosts, an unbound one for any host, and a
        dropped sandbox's placeholders stay as they are.
        """
        vault = SecretVault()
        specs = parse_secrets({"KEY": {"value": "s3cr3t", "hosts": ["a.test"]}, "ANY": "v"})
        one = vault.grant("sbx-1", specs)
        two = vault.grant("sbx-2", specs)
        self.assertNotEqual(one["KEY"], two["KEY"])
        header = f"Bearer {one['KEY']}"
        self.assertEqual("Bearer s3cr3t", vault.substitute("sbx-1", "A.test", header))
        self.assertEqual(header, vault.substitute("sbx-1", "b.test", header))
        self.assertEqual(header, vault.substitute("sbx-2", "a.test", header))
        self.assertEqual("v", vault.substitute("sbx-1", "b.test", one["ANY"]))
        vault.drop("sbx-1")
        self.assertEqual(header, vault.substitute("sbx-1", "a.test", header))


class ProxyRuleTests(SynchronousTestCase):
    def test_permitted(self):
        """
        The proxy's check: loopback, link-local and forbidden networks
        never; none nothing; open the rest; an allow list its networks and
        host names, with their ports.
        """
        forbidden = [ipaddress.IPv4Network("172.18.0.0/16")]
        allow = parse_network({"allow": ["10.0.0.0/8:80", "api.example.com"]})
        cases = [
            (parse_network("open"), "x.test", "192.0.2.1", 80, True),
            (parse_network("open"), "x.test", "127.0.0.1", 80, False),
            (parse_network("open"), "x.test", "169.254.169.254", 80, False),
            (parse_network("open"), "x.test", "172.18.0.5", 80, False),
            (parse_network("none"), "x.test", "192.0.2.1", 80, False),
            (allow, "x.test", "10.1.2.3", 80, True),
            (allow, "x.test", "10.1.2.3", 81, False),
            (allow, "API.example.com", "192.0.2.9", 8443, True),
            (allow, "other.test", "192.0.2.9", 80, False),
        ]
        for policy, host, address, port, expected in cases:
            self.assertEqual(expected, permitted(policy, host, address, port, forbidden),
                             (policy, host, address, port))

    def test_may_resolve(self):
        """
        The proxy looks a name up only for open, or for a host an allow list
        names; never for none, nor for a name an address-only list lacks.
        """
        self.assertTrue(may_resolve(parse_network("open"), "x.test"))
        self.assertFalse(may_resolve(parse_network("none"), "x.test"))
        allow = parse_network({"allow": ["10.0.0.0/8", "api.example.com:443"]})
        self.assertTrue(may_resolve(allow, "API.example.com"))
        self.assertFalse(may_resolve(allow, "other.test"))

    def test_local_addresses(self):
        """
        The host's own addresses come from the kernel's local routes.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
                    "     |-- 192.0.2.7\n        /32 host LOCAL\n"
                    "     |-- 192.0.2.255\n        /32 link BROADCAST\n")
        self.assertEqual({"192.0.2.7"}, local_addresses(path))
