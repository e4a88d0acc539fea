"""
The templates a daemon keeps, in their own SQLite file in ``data_dir``
(beside the sandboxes' store, same durability: WAL, one small transaction
per write on the reactor thread).
"""

import os
import sqlite3

import attr

#: The file's name inside data_dir.
FILENAME = "templates.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    image TEXT NOT NULL,
    base_image TEXT NOT NULL,
    profile TEXT NOT NULL,
    runtime TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0
);
"""


@attr.s(frozen=True, auto_attribs=True)
class TemplateRecord:
    """
    One template: ``image`` is what sandboxes start from, ``base_image``
    what it was baked on (a template of a template is baked on that base
    again: the seed holds all of /root).  ``deleted`` templates are gone
    for callers but their image waits for the sandboxes still using it.
    """

    id: str
    label: str
    image: str
    base_image: str
    profile: str
    runtime: str
    size: int
    created: float
    last_used: float
    identity: str = ""
    deleted: bool = False


_COLUMNS = [a.name for a in attr.fields(TemplateRecord)]


class TemplateStore:
    """
    Rows of the templates table, in ``data_dir``/templates.db.
    """

    def __init__(self, data_dir):
        os.makedirs(data_dir, exist_ok=True)
        self._db = sqlite3.connect(os.path.join(data_dir, FILENAME), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self):
        self._db.close()

    def put(self, record):
        values = attr.astuple(record)
        self._db.execute(
            f"INSERT OR REPLACE INTO templates ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            values[:-1] + (int(record.deleted),),
        )

    def delete(self, template_id):
        self._db.execute("DELETE FROM templates WHERE id = ?", (template_id,))

    def all(self):
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM templates ORDER BY created, id"
        ).fetchall()
        return [TemplateRecord(*row[:-1], deleted=bool(row[-1])) for row in rows]
