"""
Egress rules end to end: a real daemon, real containers (runc, and gVisor
through L{on_gvisor}), and test servers in a network namespace the test
made (L{tests.netnsutil}): ``allow`` reaches the allowed address and port
and nothing else, ``none`` reaches nothing, ``open`` reaches everything,
user processes and net.fetch alike, the agent keeps working; the rules go
with the sandbox and come back after a daemon restart.
"""

import asyncio
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import NetworkError, connect_sandbox
from sandboxd.egress.firewall import CHAIN
from tests.daemon import Daemon, on_gvisor, runtime_daemon
from tests.hostile import probe_connect
from tests.netnsutil import PORTS, TestNetwork, shared_network


def run(coroutine):
    return asyncio.run(coroutine)


def egress_rules():
    """The lines of ``iptables -S SANDBOXD-EGRESS``."""
    out = subprocess.run(["iptables", "-w", "-S", CHAIN], capture_output=True, text=True)
    return out.stdout.splitlines()


def has_rules(sandbox_id):
    """Whether SANDBOXD-EGRESS jumps to a chain of the sandbox (tagged by its id)."""
    return any(f"--comment {sandbox_id} " in line for line in egress_rules())


class EgressTests(SynchronousTestCase):
    """
    One allowed address:port; the other address and port refused.
    """

    runtime = "docker"

    def setUp(self):
        self.daemon = runtime_daemon(self.runtime)
        self.net = shared_network()

    def create(self, network=None):
        # A ttl: the sandbox outlives the probe's session.
        body = {"ttl": 300} if network is None else {"ttl": 300, "network": network}
        status, created = self.daemon.request("POST", "/sandboxes", body)
        self.assertEqual(201, status, created)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{created['id']}")
        return created

    def probe(self, sandbox_id, pairs):
        """
        From inside the sandbox: a user process's TCP connect and a
        net.fetch to each (address, port); [(connect outcome, fetch outcome)].
        """

        async def body():
            outcomes = []
            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                for address, port in pairs:
                    result = await sbx.process.exec_(
                        ["python3", "-c", probe_connect(address, port)])
                    try:
                        response = await sbx.net.fetch(f"http://{address}:{port}/", timeout=5)
                        fetched = response.text().split()[0]
                    except NetworkError as e:
                        fetched = e.code
                    outcomes.append((result.stdout.strip(), fetched))
            return outcomes

        return run(body())

    def test_allow_one_address_and_port(self):
        """
        ``allow`` of one address:port: a user process and net.fetch reach
        that server, and are refused (at once, by name) by the same address's
        other port and by the other address; GET shows the policy; the
        agent answers throughout.
        """
        net = self.net
        created = self.create({"allow": [f"{net.near}:{PORTS[0]}"]})
        self.assertEqual({"allow": [f"{net.near}:{PORTS[0]}"]}, created["network"])
        outcomes = self.probe(created["id"], [
            (net.near, PORTS[0]), (net.near, PORTS[1]), (net.far, PORTS[0])])
        self.assertEqual(("connected", f"{net.near}:{PORTS[0]}"), outcomes[0])
        for connect, fetched in outcomes[1:]:
            self.assertTrue(connect.startswith("ConnectionRefusedError"), outcomes)
            self.assertEqual("CONNECTION_REFUSED", fetched, outcomes)
        status, listed = self.daemon.request("GET", f"/sandboxes/{created['id']}")
        self.assertEqual(200, status, listed)
        self.assertEqual(created["network"], listed["network"])

    def test_allow_a_cidr(self):
        """
        A CIDR entry without a port lets every port of its addresses through.
        """
        net = self.net
        created = self.create({"allow": [f"{net.near}/32"]})
        outcomes = self.probe(created["id"], [(net.near, PORTS[0]), (net.near, PORTS[1]),
                                              (net.far, PORTS[0])])
        self.assertEqual([("connected", f"{net.near}:{p}") for p in PORTS], outcomes[:2])
        status, listed = self.daemon.request("GET", f"/sandboxes/{created['id']}")
        diagnosis = (outcomes, listed, egress_rules())
        self.assertTrue(outcomes[2][0].startswith("ConnectionRefusedError"), diagnosis)
        self.assertEqual("CONNECTION_REFUSED", outcomes[2][1], diagnosis)

    def test_none_reaches_nothing(self):
        """
        ``none``: both servers refused to user processes and net.fetch,
        and the agent still runs commands.
        """
        net = self.net
        created = self.create("none")
        self.assertEqual("none", created["network"])
        outcomes = self.probe(created["id"], [(net.near, PORTS[0]), (net.far, PORTS[1])])
        for connect, fetched in outcomes:
            self.assertTrue(connect.startswith("ConnectionRefusedError"), outcomes)
            self.assertEqual("CONNECTION_REFUSED", fetched)

    def test_open_reaches_both(self):
        """
        The default (open) reaches both servers: the refusals above are the
        rules', not the test network's.
        """
        net = self.net
        created = self.create()
        self.assertEqual("open", created["network"])
        outcomes = self.probe(created["id"], [(net.near, PORTS[1]), (net.far, PORTS[0])])
        self.assertEqual([("connected", f"{net.near}:{PORTS[1]}"),
                          ("connected", f"{net.far}:{PORTS[0]}")], outcomes)
        self.assertFalse(has_rules(created["id"]))

    def test_rules_go_with_the_sandbox(self):
        """
        The sandbox's jump and chain are in iptables while it lives and
        gone once its container is removed (not before: a dying container
        stays restricted).
        """
        created = self.create("none")
        self.assertTrue(has_rules(created["id"]))
        self.daemon.request("DELETE", f"/sandboxes/{created['id']}")
        # The container is killed at once and removed once no boot is under
        # way (at most MAX_REMOVAL_DELAY, 30 s, later): the rules go after.
        deadline = time.monotonic() + 120
        while has_rules(created["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(has_rules(created["id"]))

    def test_bad_network_is_named(self):
        """
        A malformed policy is a 400 INVALID_FIELD naming ``network``.
        """
        for bad in ("closed", {"allow": ["1.2.3.4:99999"]}, {"deny": []}, {"allow": "x"}):
            status, body = self.daemon.request("POST", "/sandboxes", {"network": bad})
            self.assertEqual(400, status, body)
            self.assertEqual("INVALID_FIELD", body["error"]["code"])
            self.assertIn("network", body["error"]["message"])


on_gvisor(globals(), EgressTests)


class EgressRestartTests(SynchronousTestCase):
    """
    A daemon restarted under a restricted sandbox puts its rules back (even
    when they were lost meanwhile) and sweeps those of sandboxes gone.
    """

    def test_rules_survive_restart(self):
        """
        Kill the daemon, delete the sandbox's jump by hand, start the
        daemon again: the adopted sandbox is restricted again (the far
        server refused, the near one reached).
        """
        net = TestNetwork()
        self.addCleanup(net.close)
        daemon = Daemon(min_base=0)
        daemon.start()
        self.addCleanup(daemon.stop)
        status, created = daemon.request(
            "POST", "/sandboxes", {"ttl": 600, "network": {"allow": [f"{net.near}:{PORTS[0]}"]}})
        self.assertEqual(201, status, created)
        daemon.kill()
        for line in egress_rules():
            if f"--comment {created['id']} " in line:
                subprocess.run(["iptables", "-w", "-D", *line.split()[1:]], check=True)
        self.assertFalse(has_rules(created["id"]))
        daemon.process = None
        daemon.start()
        deadline = time.monotonic() + 30
        while daemon.request("GET", f"/sandboxes/{created['id']}")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "the sandbox was not adopted")
            time.sleep(0.05)
        # Adoption re-applies the rules right after it registers the sandbox.
        while not has_rules(created["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(has_rules(created["id"]))

        async def body():
            async with await connect_sandbox(created["id"], endpoint=daemon.endpoint) as sbx:
                near = await sbx.process.exec_(["python3", "-c", probe_connect(net.near, PORTS[0])])
                far = await sbx.process.exec_(["python3", "-c", probe_connect(net.far, PORTS[0])])
                return near.stdout.strip(), far.stdout.strip()

        near, far = run(body())
        self.assertEqual("connected", near)
        self.assertTrue(far.startswith("ConnectionRefusedError"), far)
