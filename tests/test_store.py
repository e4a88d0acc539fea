"""
Tests for L{sandboxd.store}: the SQLite record of sandboxes and events, on a
real file.
"""

import os
import stat

from twisted.trial.unittest import TestCase

from sandboxd.store import MAX_EVENTS, SandboxRecord, Store, StoreError, TunnelRecord


def record(sandbox_id="sbx-1", **overrides):
    fields = dict(
        id=sandbox_id, profile="default", template=None, image="sandbox-base:latest",
        runtime="docker", memory=256 << 20, cpu=1.0, storage=100 << 20, ttl=60,
        labels={"team": "a"}, ttl_action="destroy", expires_at=None, volumes=[],
        identity="", method="warm", state="running",
        container_id="c" * 64, endpoint="tcp:172.18.0.2:7070", secret="ab" * 32,
        created=100.0, idle_since=None,
    )
    fields.update(overrides)
    return SandboxRecord(**fields)


class StoreTests(TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        self.store = Store(self.dir)
        self.addCleanup(self.store.close)

    def test_putAndReadBack(self):
        """
        A record put is read back equal, labels and all, by a second Store on
        the same file (what a restarted daemon sees).
        """
        self.store.put(record("sbx-1", created=1.0))
        self.store.put(record("sbx-2", created=2.0, labels={}, idle_since=5.5))
        again = Store(self.dir)
        self.addCleanup(again.close)
        self.assertEqual(again.sandboxes(), [record("sbx-1", created=1.0),
                                             record("sbx-2", created=2.0, labels={},
                                                    idle_since=5.5)])

    def test_updateAndDelete(self):
        """
        C{update} changes only the named columns; C{delete} removes the row;
        an unknown column is refused.
        """
        self.store.put(record())
        self.store.update("sbx-1", state="disconnected", idle_since=7.0)
        (got,) = self.store.sandboxes()
        self.assertEqual((got.state, got.idle_since, got.ttl), ("disconnected", 7.0, 60))
        self.assertRaises(ValueError, self.store.update, "sbx-1", nope=1)
        self.store.delete("sbx-1")
        self.assertEqual(self.store.sandboxes(), [])

    def test_batch(self):
        """
        Writes in a C{batch} are seen by another reader of the file only
        when it ends, together; a batch left by an exception keeps none.
        """
        other = Store(self.dir)
        self.addCleanup(other.close)
        with self.store.batch():
            self.store.put(record("sbx-1"))
            with self.store.batch():
                self.store.addEvent("sandbox.created", "sbx-1", 1.0)
            self.assertEqual((other.sandboxes(), other.events()), ([], []))
        self.assertEqual(([r.id for r in other.sandboxes()], len(other.events())), (["sbx-1"], 1))
        with self.assertRaises(ZeroDivisionError):
            with self.store.batch():
                self.store.delete("sbx-1")
                1 / 0
        self.assertEqual([r.id for r in other.sandboxes()], ["sbx-1"])

    def test_fileIsPrivate(self):
        """
        The file holds agent secrets: mode 0600 in a 0700 directory.
        """
        self.assertEqual(stat.S_IMODE(os.stat(self.store.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.dir).st_mode), 0o700)

    def test_notADatabase(self):
        """
        A state file that is not SQLite is a StoreError naming the file.
        """
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "sandboxd.db"), "wb") as f:
            f.write(b"this is not a database" * 100)
        e = self.assertRaises(StoreError, Store, path)
        self.assertIn("sandboxd.db", str(e))

    def test_events(self):
        """
        Events get increasing ids; C{events} pages by C{after}/C{limit} and
        filters by sandbox.
        """
        first = self.store.addEvent("sandbox.created", "sbx-1", 1.0, {"method": "warm"})
        self.store.addEvent("sandbox.created", "sbx-2", 2.0)
        self.store.addEvent("sandbox.destroyed", "sbx-1", 3.0, {"reason": "DELETE"})
        self.assertEqual([e.type for e in self.store.events()],
                         ["sandbox.created", "sandbox.created", "sandbox.destroyed"])
        page = self.store.events(after=first.id, limit=1)
        self.assertEqual([(e.sandbox_id, e.timestamp) for e in page], [("sbx-2", 2.0)])
        mine = self.store.events(sandbox_id="sbx-1")
        self.assertEqual([e.data for e in mine], [{"method": "warm"}, {"reason": "DELETE"}])

    def test_eventsBounded(self):
        """
        Old events are dropped so that about MAX_EVENTS are kept.
        """
        for i in range(MAX_EVENTS + 1000):
            self.store.addEvent("pool.x", None, float(i))
        kept = self.store.events(limit=MAX_EVENTS * 2)
        self.assertLessEqual(len(kept), MAX_EVENTS + 1000)
        self.assertGreaterEqual(len(kept), MAX_EVENTS)
        self.assertEqual(kept[-1].timestamp, float(MAX_EVENTS + 999))

    def test_tunnels(self):
        """
        Tunnel rows are kept per (sandbox, port), read back oldest first
        (all, or one sandbox's), survive reopening, and go one by one or
        with their sandbox's record.
        """
        self.store.put(record("sbx-1"))
        self.store.putTunnel(TunnelRecord("sbx-1", 8080, 41000, "127.0.0.1", 2.0))
        self.store.putTunnel(TunnelRecord("sbx-1", 9000, 41001, "127.0.0.1", 1.0))
        self.store.putTunnel(TunnelRecord("sbx-2", 8080, 41002, "0.0.0.0", 3.0))
        self.store.close()
        self.store = Store(self.dir)
        self.addCleanup(self.store.close)
        self.assertEqual([(t.sandbox_id, t.port) for t in self.store.tunnels()],
                         [("sbx-1", 9000), ("sbx-1", 8080), ("sbx-2", 8080)])
        self.assertEqual(self.store.tunnels("sbx-2"),
                         [TunnelRecord("sbx-2", 8080, 41002, "0.0.0.0", 3.0)])
        self.store.deleteTunnel("sbx-1", 9000)
        self.assertEqual([t.port for t in self.store.tunnels("sbx-1")], [8080])
        self.store.delete("sbx-1")
        self.assertEqual([t.sandbox_id for t in self.store.tunnels()], ["sbx-2"])

_OLD_SCHEMA = """
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY, profile TEXT NOT NULL, template TEXT, image TEXT NOT NULL,
    runtime TEXT NOT NULL, memory INTEGER NOT NULL, cpu REAL NOT NULL,
    storage INTEGER NOT NULL, ttl INTEGER NOT NULL, labels TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '', method TEXT NOT NULL, state TEXT NOT NULL,
    container_id TEXT, host TEXT, port INTEGER, secret TEXT NOT NULL,
    created REAL NOT NULL, idle_since REAL
);
"""


class MigrationTests(TestCase):
    def test_hostPortBecomeEndpoint(self):
        """
        A state file written by a daemon that recorded ``host`` and ``port``
        (before agent endpoint strings) opens with every row's endpoint set
        to ``tcp:HOST:PORT`` (IPv6 in brackets; a row without an address
        keeps none), so a daemon upgraded in place adopts those sandboxes;
        new rows are written and read back after the migration.
        """
        import sqlite3

        directory = self.mktemp()
        os.makedirs(directory)
        db = sqlite3.connect(os.path.join(directory, "sandboxd.db"))
        db.executescript(_OLD_SCHEMA)
        for sid, host, port in (("sbx-4", "172.18.0.4", 7070), ("sbx-6", "fd00::6", 7070),
                                ("sbx-0", None, None)):
            db.execute(
                "INSERT INTO sandboxes VALUES (?, 'default', NULL, 'img', 'docker', 1, 1.0,"
                " 1, 60, '{}', '', 'cold', 'running', 'c', ?, ?, 's', 1.0, NULL)",
                (sid, host, port),
            )
        db.commit()
        db.close()
        store = Store(directory)
        self.addCleanup(store.close)
        endpoints = {r.id: r.endpoint for r in store.sandboxes()}
        self.assertEqual(
            {"sbx-4": "tcp:172.18.0.4:7070", "sbx-6": "tcp:[fd00::6]:7070", "sbx-0": None},
            endpoints,
        )
        store.put(record("sbx-new", endpoint="vserial:/run/x.sock", created=9.0))
        again = Store(directory)
        self.addCleanup(again.close)
        self.assertEqual("vserial:/run/x.sock",
                         {r.id: r.endpoint for r in again.sandboxes()}["sbx-new"])
        # Columns added since default for the old rows.
        old = {r.id: r for r in again.sandboxes()}["sbx-4"]
        self.assertEqual((old.ttl_action, old.expires_at, old.volumes), ("destroy", None, []))


class VolumeRecordTests(TestCase):
    def test_volumes(self):
        """
        Volume rows are kept per (identity, name), oldest first, and
        deleted one at a time; sandbox rows keep their lifecycle fields.
        """
        from sandboxd.store import VolumeRecord

        store = Store(self.mktemp())
        self.addCleanup(store.close)
        store.putVolume(VolumeRecord("a", "v", 1 << 20, 2.0))
        store.putVolume(VolumeRecord("b", "v", 2 << 20, 1.0))
        self.assertEqual([(v.identity, v.size) for v in store.volumes()],
                         [("b", 2 << 20), ("a", 1 << 20)])
        store.deleteVolume("a", "v")
        self.assertEqual([v.identity for v in store.volumes()], ["b"])
        mounts = [{"name": "v", "path": "/data", "read_only": True, "source": "/x/mnt"}]
        store.put(record("sbx-9", ttl_action="pause", expires_at=5.5, volumes=mounts))
        (kept,) = store.sandboxes()
        self.assertEqual((kept.ttl_action, kept.expires_at, kept.volumes), ("pause", 5.5, mounts))
