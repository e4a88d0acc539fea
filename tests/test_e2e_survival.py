"""
User code against its own sandbox's agent: whatever a command does with
signals, the same SDK session's next command answers.  The agent's PID 1
ignores stop signals from inside and restarts the server when it is killed;
the daemon's link to the agent reconnects and the session holds the
client's requests meanwhile.  Real daemon, real containers, on runc and
gVisor (where gVisor differs, the test says so).
"""

import asyncio
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from sandbox import connect_sandbox
from sandbox.errors import SandboxError
from tests.daemon import runtime_daemon
from tests.dockerutil import require_docker

#: Python signalling every process but itself and PID 1 (``pkill`` of all).
SIGNAL_ALL = textwrap.dedent(
    """
    import os, sys
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, os.getpid(), os.getppid()):
            for signum in map(int, sys.argv[1:]):
                try:
                    os.kill(int(name), signum)
                except ProcessLookupError:
                    pass
    """
)

#: Python stopping (SIGSTOP) the agent's server, found by its command line.
STOP_SERVER = textwrap.dedent(
    """
    import os, signal
    for name in os.listdir("/proc"):
        if name.isdigit() and name != "1":
            try:
                cmdline = open(f"/proc/{name}/cmdline", "rb").read()
            except OSError:
                continue
            if cmdline.startswith(b"python3\\0-I\\0-m\\0agent"):
                os.kill(int(name), signal.SIGSTOP)
    """
)

#: (name, argv or shell string) of each attack.
ATTACKS = [
    ("kill -9 -1", "kill -9 -1"),
    ("kill -TERM 1", "kill -TERM 1"),
    ("kill -9 1; kill -STOP 1", "kill -9 1; kill -STOP 1"),
    ("kill -INT 1; kill -HUP 1", "kill -INT 1; kill -HUP 1"),
    ("stop signals to every process", ["python3", "-c", SIGNAL_ALL, "15", "2", "1", "3", "10", "12"]),
    ("SIGKILL to every process", ["python3", "-c", SIGNAL_ALL, "9"]),
    ("SIGSTOP to the agent's server", ["python3", "-c", STOP_SERVER]),
    ("pkill python3; pkill -9 -f agent", "pkill python3; pkill -9 -f agent"),
    ("closed standard streams, tiny ulimits", "exec 0<&- 1>&- 2>&-; ulimit -n 4 -u 8; kill -9 -1"),
]


class SurvivalTests(SynchronousTestCase):
    """
    On runc.
    """

    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = runtime_daemon(self.runtime)

    def test_agent_outlives_its_users_code(self):
        """
        After each attack, run on one SDK session, `echo alive` on the same
        session answers "alive"; the sandbox is still running.
        """
        async def scenario():
            results = []
            status, created = self.daemon.request("POST", "/sandboxes", {"ttl": 120})
            self.assertEqual(status, 201, created)
            async with await connect_sandbox(created["id"], endpoint=self.daemon.endpoint) as sbx:
                for name, command in ATTACKS:
                    try:
                        await asyncio.wait_for(sbx.process.exec_(command), 30)
                    except SandboxError:
                        pass  # The attack may kill its own stream.
                    result = await asyncio.wait_for(sbx.process.exec_("echo alive"), 30)
                    results.append((name, result.stdout, result.exit_code))
            return created["id"], results

        sandbox_id, results = asyncio.run(scenario())
        self.assertEqual(results, [(name, "alive\n", 0) for name, _ in ATTACKS])
        status, body = self.daemon.request("GET", f"/sandboxes/{sandbox_id}")
        self.assertEqual(body["state"], "disconnected")
        self.daemon.request("DELETE", f"/sandboxes/{sandbox_id}")

    def test_user_processes_die_first(self):
        """
        Processes the agent starts, shell or zygote-forked Python, have
        oom_score_adj 1000; the agent's PID 1 keeps 0.
        """
        read = "cat /proc/self/oom_score_adj /proc/1/oom_score_adj"
        py = "print(open('/proc/self/oom_score_adj').read().strip())"

        shell, snippet = self.outputs(read, ["python3", "-c", py])
        self.assertEqual((shell.split(), snippet.strip()), (["1000", "0"], "1000"))

    def outputs(self, *commands):
        """
        The standard output of each of ``commands``, run one after the other
        on one session of a new sandbox (destroyed after).
        """
        async def scenario():
            status, created = self.daemon.request("POST", "/sandboxes", {"ttl": 60})
            self.assertEqual(status, 201, created)
            async with await connect_sandbox(created["id"], endpoint=self.daemon.endpoint) as sbx:
                results = [await sbx.process.exec_(command) for command in commands]
            self.daemon.request("DELETE", f"/sandboxes/{created['id']}")
            return [result.stdout for result in results]

        return asyncio.run(scenario())


class GVisorSurvivalTests(SurvivalTests):
    """
    On gVisor.  Its Sentry, unlike Linux, would let a process of the
    sandbox SIGKILL or SIGSTOP PID 1 (``kill -9 1``, ``pkill -9 -f agent``)
    and end the sandbox; there the agent's PID 1 runs as a uid of its own,
    which root without CAP_KILL may not signal (agent/init.py leave_root).
    """

    runtime = "docker+gvisor"

    def test_init_out_of_reach(self):
        """
        PID 1 runs as its own uid; a command is root with no capability and
        gets EPERM for SIGKILL and SIGSTOP to it.
        """
        script = (
            "grep -E '^Uid' /proc/1/status | cut -f2; id -u; "
            "kill -9 1 || echo refused; kill -STOP 1 || echo refused"
        )
        [output] = self.outputs(script)
        self.assertEqual(output.split(), ["65533", "0", "refused", "refused"])
