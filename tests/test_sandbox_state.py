"""
Tests for L{sandboxd.sandbox}: the sandbox state machine and its public
JSON shape.
"""

import itertools
import re

from twisted.trial.unittest import TestCase

from sandboxd.egress.policy import parse_network
from sandboxd.sandbox import IllegalTransition, Sandbox, State

LEGAL = {
    (State.CREATING, State.READY),
    (State.CREATING, State.RUNNING),
    (State.CREATING, State.DESTROYING),
    (State.CREATING, State.FAILED),
    (State.READY, State.RUNNING),
    (State.READY, State.DESTROYING),
    (State.READY, State.FAILED),
    (State.RUNNING, State.DISCONNECTED),
    (State.RUNNING, State.DESTROYING),
    (State.RUNNING, State.FAILED),
    (State.DISCONNECTED, State.RUNNING),
    (State.DISCONNECTED, State.DESTROYING),
    (State.DISCONNECTED, State.FAILED),
    (State.RUNNING, State.PAUSED),
    (State.DISCONNECTED, State.PAUSED),
    (State.PAUSED, State.RUNNING),
    (State.PAUSED, State.DISCONNECTED),
    (State.PAUSED, State.DESTROYING),
    (State.PAUSED, State.FAILED),
    (State.FAILED, State.DESTROYING),
    (State.DESTROYING, State.DESTROYED),
}


def make_sandbox(**overrides):
    fields = dict(
        id="sb-1",
        profile="default",
        image="sandbox-base:latest",
        runtime="docker",
        memory=512 * 1024 * 1024,
        cpu=1.0,
        storage=500 * 1024 * 1024,
        secret="ab" * 32,
    )
    fields.update(overrides)
    return Sandbox(**fields)


class TransitionTests(TestCase):
    """
    C{moveTo} follows the table of legal transitions and nothing else.
    """

    def test_legalTransitions(self):
        """
        Every transition in the table is allowed and changes the state.
        """
        for start, end in sorted(LEGAL, key=lambda pair: (pair[0].value, pair[1].value)):
            sandbox = make_sandbox(state=start)
            sandbox.moveTo(end)
            self.assertEqual(sandbox.state, end, (start, end))

    def test_illegalTransitions(self):
        """
        Every other pair of states (staying put included) raises
        IllegalTransition naming both states, and leaves the state alone.
        """
        illegal = set(itertools.product(State, State)) - LEGAL
        self.assertEqual(len(illegal), len(State) ** 2 - len(LEGAL))
        for start, end in illegal:
            sandbox = make_sandbox(state=start)
            e = self.assertRaises(IllegalTransition, sandbox.moveTo, end)
            self.assertIn(start.value, str(e))
            self.assertIn(end.value, str(e))
            self.assertEqual(sandbox.state, start, (start, end))

    def test_destroyedIsFinal(self):
        """
        Nothing leaves DESTROYED.
        """
        for end in State:
            self.assertRaises(
                IllegalTransition, make_sandbox(state=State.DESTROYED).moveTo, end
            )

    def test_lifecycle(self):
        """
        A new sandbox is CREATING and can live its whole life: warm, claimed,
        destroyed.
        """
        sandbox = make_sandbox()
        self.assertEqual(sandbox.state, State.CREATING)
        for state in (State.READY, State.RUNNING, State.DESTROYING, State.DESTROYED):
            sandbox.moveTo(state)
        self.assertEqual(sandbox.state, State.DESTROYED)

    def test_alive(self):
        """
        C{alive} is true exactly in CREATING, READY, RUNNING,
        DISCONNECTED and PAUSED (a paused sandbox holds its container).
        """
        self.assertEqual(
            {state for state in State if make_sandbox(state=state).alive},
            {State.CREATING, State.READY, State.RUNNING, State.DISCONNECTED, State.PAUSED},
        )

    def test_everyStateHasAWayOut(self):
        """
        Every state but DESTROYED can reach DESTROYING (so DELETE works in
        every state) or is DESTROYING itself.
        """
        for state in State:
            if state in (State.DESTROYED, State.DESTROYING):
                continue
            self.assertIn((state, State.DESTROYING), LEGAL, state)

    def test_recordRoundTrip(self):
        """
        A sandbox made from its own record equals it field for field
        (connection and sessions aside).
        """
        sandbox = make_sandbox(
            ttl=30, labels={"k": "v"}, state=State.DISCONNECTED, endpoint="tcp:172.18.0.5:7070",
            container_id="c" * 64, created=12.5, idle_since=20.0,
            identity="tenant-a", method="warm", ttl_action="pause", expires_at=99.5,
            volumes=[{"name": "v", "path": "/data", "read_only": False}],
        )
        again = Sandbox.fromRecord(sandbox.record())
        self.assertEqual(again.record(), sandbox.record())
        self.assertIs(again.state, State.DISCONNECTED)


class JSONTests(TestCase):
    """
    C{toJSON} is the sandbox as the API shows it.
    """

    def test_shape(self):
        """
        C{toJSON} has exactly the public fields, the state as its string
        value, and the creation time as ISO 8601 UTC ending in Z; the
        network policy as written (open until one is set) and the names of
        its secrets.
        """
        sandbox = make_sandbox(
            created=1700000000.0,
            ttl=600,
            labels={"team": "a"},
            template="tpl-1",
            method="warm",
            state=State.RUNNING,
        )
        self.assertEqual(
            sandbox.toJSON(),
            {
                "id": "sb-1",
                "profile": "default",
                "template": "tpl-1",
                "image": "sandbox-base:latest",
                "runtime": "docker",
                "state": "running",
                "created": "2023-11-14T22:13:20Z",
                "ttl": 600,
                "labels": {"team": "a"},
                "ttl_action": "destroy",
                "expires_at": None,
                "volumes": [],
                "memory": 512 * 1024 * 1024,
                "cpu": 1.0,
                "storage": 500 * 1024 * 1024,
                "method": "warm",
                "identity": "",
                "network": "open",
                "secrets": [],
            },
        )
        sandbox.network = parse_network({"allow": ["10.0.0.0/8:443"]})
        sandbox.secret_names = ("API_TOKEN",)
        self.assertEqual({"allow": ["10.0.0.0/8:443"]}, sandbox.toJSON()["network"])
        self.assertEqual(["API_TOKEN"], sandbox.toJSON()["secrets"])

    def test_secretNotShown(self):
        """
        The secret and the connection appear neither in the JSON nor in the
        repr.
        """
        sandbox = make_sandbox(secret="topsecret" * 4)
        self.assertNotIn("topsecret", repr(sandbox.toJSON()))
        self.assertNotIn("topsecret", repr(sandbox))

    def test_timestamps(self):
        """
        Fractions of a second are kept and every timestamp ends in Z.
        """
        for created, expected in (
            (0.0, "1970-01-01T00:00:00Z"),
            (1.5, "1970-01-01T00:00:01.500000Z"),
        ):
            text = make_sandbox(created=created).toJSON()["created"]
            self.assertEqual(text, expected)
            self.assertTrue(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", text))

    def test_stateValues(self):
        """
        The JSON state is the state's lowercase name for every state.
        """
        for state in State:
            self.assertEqual(make_sandbox(state=state).toJSON()["state"], state.name.lower())

    def test_labelsCopied(self):
        """
        The JSON labels are a copy: changing them does not change the
        sandbox.
        """
        sandbox = make_sandbox(labels={"a": "1"})
        sandbox.toJSON()["labels"]["b"] = "2"
        self.assertEqual(sandbox.labels, {"a": "1"})
