"""
The agent's name operations (fs.mkdir, fs.remove, fs.rename, fs.list with
depth) and its environment (env.*), over a real connection.
"""

import os

from .test_agent import AgentTestCase


class MkdirTests(AgentTestCase):
    """
    fs.mkdir.
    """

    def test_mkdir(self):
        """
        A new directory gets ``mode`` exactly; an existing one is EEXIST; a
        missing parent is ENOENT with the path.
        """
        path = self.path("d")
        reply = self.client.call("fs.mkdir", {"path": path, "mode": 0o700})
        self.assertEqual(reply.result, {"path": path})
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o700)
        self.assertEqual(self.assertError(self.client.call("fs.mkdir", {"path": path}), "EEXIST")["path"], path)
        error = self.assertError(self.client.call("fs.mkdir", {"path": self.path("x", "y")}), "ENOENT")
        self.assertEqual(error["path"], self.path("x", "y"))

    def test_parents(self):
        """
        With parents, the whole chain is made and an existing directory is
        fine; a file in the way is EEXIST or ENOTDIR.
        """
        path = self.path("a", "b", "c")
        self.assertEqual(self.client.call("fs.mkdir", {"path": path, "parents": True}).result, {"path": path})
        self.assertTrue(os.path.isdir(path))
        self.assertEqual(self.client.call("fs.mkdir", {"path": path, "parents": True}).result, {"path": path})
        open(self.path("f"), "w").close()
        self.assertError(self.client.call("fs.mkdir", {"path": self.path("f"), "parents": True}), "EEXIST")
        self.assertError(self.client.call("fs.mkdir", {"path": self.path("f", "g"), "parents": True}), "ENOTDIR")


class RemoveTests(AgentTestCase):
    """
    fs.remove.
    """

    def test_file_symlink_and_empty_dir(self):
        """
        Files, symlinks (not their target) and empty directories go; a
        missing path is ENOENT.
        """
        open(self.path("target"), "w").close()
        os.symlink("target", self.path("link"))
        os.mkdir(self.path("empty"))
        for name in ("link", "empty"):
            self.assertEqual(self.client.call("fs.remove", {"path": self.path(name)}).result, {})
        self.assertEqual(os.listdir(self.tmp), ["target"])
        self.client.call("fs.remove", {"path": self.path("target")}).result
        self.assertEqual(os.listdir(self.tmp), [])
        error = self.assertError(self.client.call("fs.remove", {"path": self.path("target")}), "ENOENT")
        self.assertEqual(error["path"], self.path("target"))

    def test_recursive(self):
        """
        A non-empty directory is ENOTEMPTY unless ``recursive``.
        """
        os.makedirs(self.path("tree", "a", "b"))
        for i in range(50):
            open(self.path("tree", "a", f"f{i}"), "w").close()
        self.assertError(self.client.call("fs.remove", {"path": self.path("tree")}), "ENOTEMPTY")
        reply = self.client.call("fs.remove", {"path": self.path("tree"), "recursive": True})
        self.assertEqual(reply.result, {})
        self.assertFalse(os.path.exists(self.path("tree")))


class RenameTests(AgentTestCase):
    """
    fs.rename.
    """

    def test_rename(self):
        """
        A file moves; ``overwrite: false`` refuses an existing destination
        with EEXIST; a missing source is ENOENT naming it.
        """
        with open(self.path("a"), "w") as f:
            f.write("A")
        reply = self.client.call("fs.rename", {"src": self.path("a"), "dst": self.path("b")})
        self.assertEqual(reply.result, {"src": self.path("a"), "dst": self.path("b")})
        with open(self.path("b")) as f:
            self.assertEqual(f.read(), "A")
        open(self.path("c"), "w").close()
        error = self.assertError(
            self.client.call("fs.rename", {"src": self.path("b"), "dst": self.path("c"), "overwrite": False}),
            "EEXIST",
        )
        self.assertEqual(error["path"], self.path("c"))
        self.client.call("fs.rename", {"src": self.path("b"), "dst": self.path("c")}).result
        self.assertEqual(sorted(os.listdir(self.tmp)), ["c"])
        error = self.assertError(self.client.call("fs.rename", {"src": self.path("a"), "dst": self.path("d")}), "ENOENT")
        self.assertEqual(error["path"], self.path("a"))

    def test_directory_into_file(self):
        """
        A directory cannot replace a file (ENOTDIR).
        """
        os.mkdir(self.path("d"))
        open(self.path("f"), "w").close()
        self.assertError(self.client.call("fs.rename", {"src": self.path("d"), "dst": self.path("f")}), "ENOTDIR")


class ListDepthTests(AgentTestCase):
    """
    fs.list with ``depth``.
    """

    def test_depth(self):
        """
        depth 2 lists the children of subdirectories, not deeper; every entry
        carries its path; symlinked directories are not entered.
        """
        os.makedirs(self.path("a", "b", "c"))
        open(self.path("a", "f"), "w").close()
        os.symlink(self.path("a"), self.path("link"))
        reply = self.client.call("fs.list", {"path": self.tmp, "depth": 2})
        entries = [e for event in reply.events for e in event["entries"]]
        paths = [os.path.relpath(e["path"], self.tmp) for e in entries]
        self.assertEqual(paths, ["a", "a/b", "a/f", "link"])
        self.assertEqual(reply.result, {"count": 4})
        self.assertEqual(entries[1]["name"], "b")
        reply = self.client.call("fs.list", {"path": self.tmp, "depth": 5})
        self.assertEqual(reply.result, {"count": 5})
        self.assertError(self.client.call("fs.list", {"path": self.tmp, "depth": 0}), "BAD_PARAMS")


class EnvTests(AgentTestCase):
    """
    env.* change the environment of later processes.
    """

    def test_set_get_list_delete(self):
        """
        A variable set is seen by a later exec and env.get/list; a deleted
        one is gone from both; the request's own env still wins.
        """
        self.assertEqual(self.client.call("env.set", {"vars": {"SBX_T1": "one", "SBX_T2": "two"}}).result, {})
        self.addCleanup(self.client.call, "env.delete", {"names": ["SBX_T1", "SBX_T2"]})
        self.assertEqual(self.client.call("env.get", {"name": "SBX_T1"}).result, {"name": "SBX_T1", "value": "one"})
        self.assertEqual(self.client.call("env.list").result["env"]["SBX_T2"], "two")
        reply = self.exec("echo $SBX_T1 $SBX_T2")
        self.assertEqual(reply.stdout, b"one two\n")
        reply = self.exec("echo $SBX_T1", env={"SBX_T1": "mine"})
        self.assertEqual(reply.stdout, b"mine\n")
        reply = self.client.call("env.delete", {"names": ["SBX_T1", "SBX_NONE"]})
        self.assertEqual(reply.result, {"deleted": ["SBX_T1"]})
        self.assertEqual(self.client.call("env.get", {"name": "SBX_T1"}).result["value"], None)
        self.assertNotIn("SBX_T1", self.client.call("env.list").result["env"])
        self.assertEqual(self.exec("echo x${SBX_T1}x").stdout, b"xx\n")

    def test_shared_by_connections(self):
        """
        The environment belongs to the agent: another connection sees it.
        """
        self.client.call("env.set", {"vars": {"SBX_SHARED": "yes"}}).result
        self.addCleanup(self.client.call, "env.delete", {"names": ["SBX_SHARED"]})
        other = self.connect()
        self.assertEqual(other.call("process.exec", {"cmd": "echo $SBX_SHARED"}).stdout, b"yes\n")

    def test_bad_params(self):
        """
        Names with "=" and non-string values are BAD_PARAMS.
        """
        self.assertError(self.client.call("env.set", {"vars": {"A=B": "x"}}), "BAD_PARAMS")
        self.assertError(self.client.call("env.set", {"vars": {"A": 1}}), "BAD_PARAMS")
        self.assertError(self.client.call("env.get", {"name": "A=B"}), "BAD_PARAMS")
        self.assertError(self.client.call("env.delete", {"names": "A"}), "BAD_PARAMS")
