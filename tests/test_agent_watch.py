"""
The agent's fs.watch (inotify through ctypes), over a real connection.
"""

import os
import shutil
import time

from agent import wire
from agent.wire import FrameType

from .test_agent import AgentTestCase


class WatchTests(AgentTestCase):
    """
    fs.watch.
    """

    def start(self, path, **params):
        sid = self.client.request("fs.watch", dict(params, path=path))
        ready = self.client.recv_stream(sid)
        self.assertIs(ready.type, FrameType.EVENT, ready)
        self.assertTrue(ready.json()["ready"])
        return sid

    def events(self, sid, until, timeout=5):
        """
        Events of ``sid`` until one matches ``until(event)``.
        """
        seen = []
        deadline = time.monotonic() + timeout
        while not any(until(e) for e in seen):
            self.assertLess(time.monotonic(), deadline, seen)
            frame = self.client.recv_stream(sid)
            self.assertIs(frame.type, FrameType.EVENT, frame)
            seen.extend(frame.json()["events"])
        return [(e["type"], os.path.relpath(e["path"], self.tmp), e["is_dir"]) for e in seen]

    def test_create_modify_move_delete(self):
        """
        Creating, writing, moving and deleting a file and making
        a directory are reported in order with their paths; CANCEL ends the
        watch.
        """
        sid = self.start(self.tmp)
        with open(self.path("f"), "w") as f:
            for _ in range(50):
                f.write("x")
                f.flush()
        os.rename(self.path("f"), self.path("g"))
        os.unlink(self.path("g"))
        os.mkdir(self.path("d"))
        seen = self.events(sid, lambda e: e["type"] == "create" and e["is_dir"])
        self.assertEqual(seen[0], ("create", "f", False))
        self.assertIn(("modify", "f", False), seen)
        # Writes read in one batch are coalesced; never more events than writes.
        self.assertLessEqual(sum(1 for e in seen if e[0] == "modify"), 50)
        tail = [e for e in seen if e[0] != "modify"]
        self.assertEqual(
            tail,
            [("create", "f", False), ("move_from", "f", False), ("move_to", "g", False),
             ("delete", "g", False), ("create", "d", True)],
        )
        self.client.send(wire.cancel(sid))
        self.assertError(self.client.collect(sid), "CANCELLED")

    def test_recursive(self):
        """
        A recursive watch sees inside existing and newly made
        subdirectories; a plain one does not.
        """
        os.makedirs(self.path("a", "b"))
        plain = self.start(self.tmp)
        deep = self.start(self.tmp, recursive=True)
        with open(self.path("a", "b", "deep.txt"), "w"):
            pass
        os.makedirs(self.path("new", "inner"))
        with open(self.path("new", "inner", "x"), "w"):
            pass
        seen = self.events(deep, lambda e: e["path"].endswith("new/inner/x"))
        self.assertIn(("create", "a/b/deep.txt", False), seen)
        self.assertIn(("create", "new/inner/x", False), seen)
        seen = self.events(plain, lambda e: e["path"].endswith("new"))
        self.assertEqual(seen, [("create", "new", True)])
        for sid in (plain, deep):
            self.client.send(wire.cancel(sid))
            self.assertError(self.client.collect(sid), "CANCELLED")

    def test_root_deleted_and_errors(self):
        """
        The watch ends with RESULT when its directory is deleted; a missing
        path is ENOENT, a file ENOTDIR.
        """
        os.mkdir(self.path("gone"))
        sid = self.start(self.path("gone"))
        shutil.rmtree(self.path("gone"))
        reply = self.client.collect(sid)
        self.assertEqual(reply.result, {"reason": "deleted"})
        self.assertError(self.client.call("fs.watch", {"path": self.path("none")}), "ENOENT")
        open(self.path("file"), "w").close()
        self.assertError(self.client.call("fs.watch", {"path": self.path("file")}), "ENOTDIR")
