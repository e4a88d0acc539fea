"""
The agent's fs.upload and fs.download: tar streams with flow control both
ways, and an extraction that refuses to leave its target.
"""

import hashlib
import io
import os
import tarfile

from agent import wire
from agent.wire import FrameType

from .test_agent import AgentTestCase

MiB = 1024 * 1024


def make_tar(members):
    """
    A tar built from (TarInfo keyword dict, content bytes or None).
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for fields, content in members:
            fields = dict(fields)
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


class UploadTests(AgentTestCase):
    """
    fs.upload.
    """

    def upload(self, path, archive):
        sid = self.client.request("fs.upload", {"path": path})
        credit = wire.SendWindow()
        for piece in wire.chunks(archive):
            while not credit.take(len(piece)):
                frame = self.client.recv_stream(sid)
                if frame.type is not FrameType.WINDOW:
                    self.client.queued[sid].appendleft(frame)
                    return self.client.collect(sid)
                credit.grant(frame.window())
            self.client.send(wire.data(sid, piece))
        self.client.send(wire.end(sid))
        return self.client.collect(sid)

    def test_tree(self):
        """
        Files (with modes), directories, an inside symlink and a hard link
        land under the target, which is made if missing.
        """
        archive = make_tar([
            ({"name": "top", "type": tarfile.DIRTYPE, "mode": 0o750}, None),
            ({"name": "top/run.sh", "mode": 0o755}, b"#!/bin/sh\n"),
            ({"name": "top/sub/data", "mode": 0o600}, b"x" * 1000),
            ({"name": "top/link", "type": tarfile.SYMTYPE, "linkname": "sub/data"}, None),
            ({"name": "top/hard", "type": tarfile.LNKTYPE, "linkname": "top/run.sh"}, None),
        ])
        reply = self.upload(self.path("dest", "new"), archive)
        self.assertEqual(reply.result, {"files": 2, "dirs": 1, "symlinks": 1, "hardlinks": 1, "bytes": 1010})
        root = self.path("dest", "new", "top")
        self.assertEqual(os.stat(root).st_mode & 0o7777, 0o750)
        self.assertEqual(os.stat(os.path.join(root, "run.sh")).st_mode & 0o7777, 0o755)
        self.assertEqual(os.readlink(os.path.join(root, "link")), "sub/data")
        with open(os.path.join(root, "link"), "rb") as f:
            self.assertEqual(f.read(), b"x" * 1000)
        self.assertEqual(os.stat(os.path.join(root, "hard")).st_ino, os.stat(os.path.join(root, "run.sh")).st_ino)

    def test_large_with_windows(self):
        """
        A 40 MiB archive goes through within the window (WINDOW frames come
        back) and its content arrives intact.
        """
        content = os.urandom(40 * MiB)
        reply = self.upload(self.tmp, make_tar([({"name": "big"}, content)]))
        self.assertEqual(reply.result["bytes"], 40 * MiB)
        with open(self.path("big"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(content).digest())

    def test_refusals(self):
        """
        Absolute names, "..", escaping symlinks and hard links, and device
        files are UNSAFE_PATH naming the member; nothing is written outside.
        """
        cases = [
            [({"name": "/etc/evil"}, b"x")],
            [({"name": "a/../../evil"}, b"x")],
            [({"name": "l", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None)],
            [({"name": "l", "type": tarfile.SYMTYPE, "linkname": "../.."}, None)],
            [({"name": "h", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None)],
            [({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
            [({"name": "fifo", "type": tarfile.FIFOTYPE}, None)],
            # A link fine when made, retargeted by a later one: caught at the end.
            [({"name": "e", "type": tarfile.SYMTYPE, "linkname": "x/.."}, None),
             ({"name": "x", "type": tarfile.SYMTYPE, "linkname": "."}, None)],
        ]
        for i, members in enumerate(cases):
            target = self.path(f"t{i}")
            os.mkdir(target)
            name = members[-1][0]["name"] if i == 7 else members[0][0]["name"]
            reply = self.upload(target, make_tar(members))
            error = self.assertError(reply, "UNSAFE_PATH")
            self.assertIn(error["path"], (name, members[0][0]["name"]), error)
            self.assertFalse(os.path.lexists(os.path.join(target, "e")), i)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.tmp), "evil")))

    def test_existing_symlink_out(self):
        """
        A member whose parent is an existing symlink out of the target is
        refused.
        """
        os.mkdir(self.path("target"))
        os.mkdir(self.path("outside"))
        os.symlink(self.path("outside"), self.path("target", "way-out"))
        reply = self.upload(self.path("target"), make_tar([({"name": "way-out/file"}, b"x")]))
        self.assertError(reply, "UNSAFE_PATH")
        self.assertEqual(os.listdir(self.path("outside")), [])

    def test_not_a_tar(self):
        """
        Garbage is BAD_ARCHIVE; a target that is a file is ENOTDIR or EEXIST.
        """
        self.assertError(self.upload(self.tmp, b"this is not a tar" * 100), "BAD_ARCHIVE")
        open(self.path("file"), "w").close()
        reply = self.upload(self.path("file"), make_tar([({"name": "x"}, b"x")]))
        self.assertIn(reply.error["code"], ("ENOTDIR", "EEXIST"))


class DownloadTests(AgentTestCase):
    """
    fs.download.
    """

    def test_directory_roundtrip(self):
        """
        A directory comes back as a tar holding its tree, symlinks as links.
        """
        os.makedirs(self.path("d", "sub"))
        with open(self.path("d", "sub", "f"), "wb") as f:
            f.write(b"hello")
        os.symlink("sub/f", self.path("d", "link"))
        reply = self.client.call("fs.download", {"path": self.path("d")})
        self.assertEqual(reply.result, {"size": len(reply.body)})
        with tarfile.open(fileobj=io.BytesIO(reply.body)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            self.assertEqual(sorted(members), ["d", "d/link", "d/sub", "d/sub/f"])
            self.assertTrue(members["d/link"].issym())
            self.assertEqual(tar.extractfile("d/sub/f").read(), b"hello")

    def test_window(self):
        """
        A 20 MiB file streams no more than the window ahead of the client,
        then completes once credit is granted.
        """
        with open(self.path("big"), "wb") as f:
            f.write(os.urandom(20 * MiB))
        sid = self.client.request("fs.download", {"path": self.path("big")})
        received = 0
        while received < wire.INITIAL_WINDOW:
            frame = self.client.recv_stream(sid)
            self.assertIs(frame.type, FrameType.DATA)
            received += len(frame.payload)
        import time

        time.sleep(0.3)
        self.assertFalse(self.client.queued[sid])
        self.client.send(wire.window(sid, received))
        reply = self.client.collect(sid)
        body = reply.body
        self.assertEqual(reply.result["size"], received + len(body))
        self.assertGreater(reply.result["size"], 20 * MiB)

    def test_missing_and_cancel(self):
        """
        A missing path is ENOENT; CANCEL stops a download mid-way.
        """
        self.assertError(self.client.call("fs.download", {"path": self.path("none")}), "ENOENT")
        with open(self.path("big"), "wb") as f:
            f.write(os.urandom(16 * MiB))
        sid = self.client.request("fs.download", {"path": self.path("big")})
        self.client.recv_stream(sid)
        self.client.send(wire.cancel(sid))
        reply = self.client.collect(sid)
        self.assertError(reply, "CANCELLED")
        self.assertEqual(self.client.call("ping").result, {})
