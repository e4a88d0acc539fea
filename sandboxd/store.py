"""
The daemon's durable record of its sandboxes and events: one SQLite file in
``server.data_dir``.

Every write is one small transaction on the reactor thread (the writes of
one lifecycle move share one: ``batch``).  The database
runs in WAL mode with ``synchronous=NORMAL``: a commit is an append to the
log with no fsync (tens of microseconds), durable across a crash or
``kill -9`` of the daemon; only a power cut can lose the last commits, and it
cannot corrupt the file.
"""

import json
import os
import sqlite3
from contextlib import contextmanager

import attr

#: The file's name inside data_dir.
FILENAME = "sandboxd.db"
#: Events kept; older ones are dropped as new ones come.
MAX_EVENTS = 10000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    template TEXT,
    image TEXT NOT NULL,
    runtime TEXT NOT NULL,
    memory INTEGER NOT NULL,
    cpu REAL NOT NULL,
    storage INTEGER NOT NULL,
    ttl INTEGER NOT NULL,
    labels TEXT NOT NULL,
    ttl_action TEXT NOT NULL DEFAULT 'destroy',
    expires_at REAL,
    volumes TEXT NOT NULL DEFAULT '[]',
    identity TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL,
    state TEXT NOT NULL,
    container_id TEXT,
    endpoint TEXT,
    secret TEXT NOT NULL,
    created REAL NOT NULL,
    idle_since REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    sandbox_id TEXT,
    identity TEXT NOT NULL DEFAULT '',
    timestamp REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    identity TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (identity, name)
);
CREATE TABLE IF NOT EXISTS networks (
    sandbox_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnels (
    sandbox_id TEXT NOT NULL,
    port INTEGER NOT NULL,
    host_port INTEGER NOT NULL,
    bind_address TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (sandbox_id, port)
);
"""


class StoreError(Exception):
    """
    The state file cannot be opened or is not ours.
    """


@attr.s(frozen=True, auto_attribs=True)
class SandboxRecord:
    """
    One row of the sandboxes table.
    """

    id: str
    profile: str
    template: str
    image: str
    runtime: str
    memory: int
    cpu: float
    storage: int
    ttl: int
    labels: dict
    ttl_action: str
    expires_at: float
    volumes: list
    identity: str
    method: str
    state: str
    container_id: str
    endpoint: str
    secret: str = attr.ib(repr=False)
    created: float
    idle_since: float


_COLUMNS = [a.name for a in attr.fields(SandboxRecord)]


@attr.s(frozen=True, auto_attribs=True)
class Event:
    """
    One recorded event (DESIGN.md's event shape).
    """

    id: int
    type: str
    sandbox_id: str
    identity: str
    timestamp: float
    data: dict


@attr.s(frozen=True, auto_attribs=True)
class TunnelRecord:
    """
    One row of the tunnels table: a dedicated host port of a sandbox.
    """

    sandbox_id: str
    port: int
    host_port: int
    bind_address: str
    created: float


#: Columns added since the first schema, with their definitions.
_ADDED = (
    ("ttl_action", "TEXT NOT NULL DEFAULT 'destroy'"),
    ("expires_at", "REAL"),
    ("volumes", "TEXT NOT NULL DEFAULT '[]'"),
)


@attr.s(frozen=True, auto_attribs=True)
class VolumeRecord:
    """
    One row of the volumes table: a volume of one identity (sandboxd/volumes/).
    """

    identity: str
    name: str
    size: int
    created: float


def _migrate(db):
    """
    Bring a file written by an older daemon up to this schema: sandboxes
    recorded with ``host`` and ``port`` (TCP agents, before agent endpoint
    strings) get ``endpoint`` = ``tcp:HOST:PORT``; columns added since
    (L{_ADDED}) get their defaults.  The old columns stay (unused) so that
    the file's rows are never rewritten wholesale.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(sandboxes)")}
    for name, definition in _ADDED:
        if name not in columns:
            db.execute(f"ALTER TABLE sandboxes ADD COLUMN {name} {definition}")
    if "endpoint" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE sandboxes ADD COLUMN endpoint TEXT")
        if {"host", "port"} <= columns:
            db.execute(
                "UPDATE sandboxes SET endpoint = 'tcp:' ||"
                " CASE WHEN instr(host, ':') THEN '[' || host || ']' ELSE host END"
                " || ':' || port WHERE host IS NOT NULL AND port IS NOT NULL"
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class Store:
    """
    The sandboxes and events of one daemon, in ``data_dir/sandboxd.db``
    (created with mode 0600: it holds each agent's secret).
    """

    def __init__(self, data_dir):
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(data_dir, FILENAME)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
        except (OSError, sqlite3.DatabaseError) as e:
            raise StoreError(f"cannot open the state file {self.path}: {e}") from e
        self._eventObservers = []

    def close(self):
        self._db.close()

    @contextmanager
    def batch(self):
        """
        The writes made inside commit together, as one transaction (inside
        another batch: with it).
        """
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back itself
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # Sandboxes

    def put(self, record):
        """
        Insert or replace a sandbox's row.
        """
        fields = attr.asdict(record, recurse=False)
        fields["labels"] = json.dumps(record.labels)
        fields["volumes"] = json.dumps(record.volumes)
        self._db.execute(
            f"INSERT OR REPLACE INTO sandboxes ({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(_COLUMNS))})",
            [fields[name] for name in _COLUMNS],
        )

    def update(self, sandbox_id, **fields):
        """
        Change some columns of a sandbox's row (no-op when it has none).
        """
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no such columns: {sorted(unknown)}")
        if "labels" in fields:
            fields["labels"] = json.dumps(fields["labels"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE sandboxes SET {assignments} WHERE id = ?",
            (*fields.values(), sandbox_id),
        )

    def delete(self, sandbox_id):
        """
        Forget a sandbox, and its tunnels with it.
        """
        self._db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))
        self._db.execute("DELETE FROM tunnels WHERE sandbox_id = ?", (sandbox_id,))
        self._db.execute("DELETE FROM networks WHERE sandbox_id = ?", (sandbox_id,))

    def sandboxes(self):
        """
        Every recorded sandbox, oldest first.
        """
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM sandboxes ORDER BY created"
        ).fetchall()
        records = []
        for row in rows:
            fields = dict(zip(_COLUMNS, row))
            fields["labels"] = json.loads(fields["labels"])
            fields["volumes"] = json.loads(fields["volumes"])
            records.append(SandboxRecord(**fields))
        return records

    # Egress policies (sandboxd/egress/): only sandboxes with rules have one.

    def putNetwork(self, sandbox_id, policy):
        """
        Record a sandbox's egress policy (its JSON form).
        """
        self._db.execute("INSERT OR REPLACE INTO networks (sandbox_id, policy) VALUES (?, ?)",
                         (sandbox_id, json.dumps(policy)))

    def networks(self):
        """
        {sandbox id: policy (JSON form)} of every recorded policy.
        """
        rows = self._db.execute("SELECT sandbox_id, policy FROM networks").fetchall()
        return {sandbox_id: json.loads(policy) for sandbox_id, policy in rows}

    # Events

    def observeEvents(self, observer):
        """
        Call ``observer(event)`` with every event ``addEvent`` records (the
        one way events are written), right after it is committed.
        """
        self._eventObservers.append(observer)

    def addEvent(self, type, sandbox_id, timestamp, data=None, identity=""):
        """
        Record an event; return it with its id.
        """
        data = data or {}
        cursor = self._db.execute(
            "INSERT INTO events (type, sandbox_id, identity, timestamp, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (type, sandbox_id, identity, timestamp, json.dumps(data)),
        )
        event_id = cursor.lastrowid
        if event_id % 1000 == 0:
            self._db.execute(
                "DELETE FROM events WHERE id <= ?", (event_id - MAX_EVENTS,)
            )
        event = Event(event_id, type, sandbox_id, identity, timestamp, data)
        for observer in self._eventObservers:
            observer(event)
        return event

    def eventBounds(self):
        """
        The ids of the oldest and newest events kept, ``(None, None)`` when
        none are.
        """
        return tuple(self._db.execute("SELECT MIN(id), MAX(id) FROM events").fetchone())

    def events(self, after=0, limit=100, sandbox_id=None, identity=None):
        """
        Events with an id above ``after``, oldest first, at most ``limit``
        (of one sandbox, of one identity: None for any).
        """
        query = "SELECT id, type, sandbox_id, identity, timestamp, data FROM events WHERE id > ?"
        args = [after]
        if sandbox_id is not None:
            query += " AND sandbox_id = ?"
            args.append(sandbox_id)
        if identity is not None:
            query += " AND identity = ?"
            args.append(identity)
        query += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [
            Event(i, t, s, who, ts, json.loads(d))
            for i, t, s, who, ts, d in self._db.execute(query, args)
        ]

    # Tunnels

    def putTunnel(self, record):
        """
        Insert or replace a tunnel's row.
        """
        self._db.execute(
            "INSERT OR REPLACE INTO tunnels (sandbox_id, port, host_port, bind_address, created)"
            " VALUES (?, ?, ?, ?, ?)",
            attr.astuple(record),
        )

    def deleteTunnel(self, sandbox_id, port):
        self._db.execute(
            "DELETE FROM tunnels WHERE sandbox_id = ? AND port = ?", (sandbox_id, port)
        )

    def tunnels(self, sandbox_id=None):
        """
        The recorded tunnels (of one sandbox), oldest first.
        """
        query = "SELECT sandbox_id, port, host_port, bind_address, created FROM tunnels"
        args = ()
        if sandbox_id is not None:
            query += " WHERE sandbox_id = ?"
            args = (sandbox_id,)
        return [TunnelRecord(*row) for row in self._db.execute(query + " ORDER BY created", args)]

    # Volumes

    def putVolume(self, record):
        self._db.execute(
            "INSERT OR REPLACE INTO volumes (identity, name, size, created) VALUES (?, ?, ?, ?)",
            attr.astuple(record),
        )

    def deleteVolume(self, identity, name):
        self._db.execute("DELETE FROM volumes WHERE identity = ? AND name = ?", (identity, name))

    def volumes(self):
        """
        Every recorded volume, oldest first.
        """
        return [VolumeRecord(*row) for row in self._db.execute(
            "SELECT identity, name, size, created FROM volumes ORDER BY created")]
