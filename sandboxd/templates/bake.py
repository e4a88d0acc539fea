"""
Baking a running sandbox's writable state into an image.

The sandbox's root filesystem is read-only and /root is a tmpfs, so
``docker commit`` of the sandbox would capture nothing.  Instead the agent
streams /root out as a tar (``fs.download``), and the engine extracts that
stream into a stopped helper container made from the sandbox's base image
(``PUT /containers/{id}/archive``), which is then committed: one new layer
holding ``/.sandboxd/seed/root``.  A sandbox started from the image has its
/root tmpfs filled from the seed before it is handed out (L{seed}).

The tar never sits whole in memory: it flows from the agent's stream to the
engine's request with the agent's window as backpressure, and the size cap
is checked on every chunk.  Any failure (the cap, the agent, the engine)
removes the helper container and leaves no image.
"""

import io
import tarfile

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from agent import wire
from sandboxd.protocols.agent import AgentCallError, IStreamHandler
from sandboxd.protocols.httprelay import BytesProducer
from sandboxd.runtimes._engine import EngineError, path_part

#: Where a template image keeps the saved /root (extracted there as "root").
SEED_DIR = "/.sandboxd/seed"
#: The directories the template saves (the writable mounts but /tmp).
SAVED_PATHS = ("/root",)
#: Repository of template images; the tag is the template id.
REPOSITORY = "sandboxd-template"
#: The command that fills a fresh sandbox's /root from the seed.
SEED_COMMAND = ["cp", "-a", f"{SEED_DIR}/root/.", "/root/"]


class TemplateTooLarge(Exception):
    """
    The sandbox's writable state is larger than ``limits.max_template_size``.
    """

    def __init__(self, limit):
        super().__init__(
            f"the sandbox's writable state exceeds max_template_size ({limit} bytes)"
        )
        self.limit = limit


class BakeFailed(Exception):
    """
    The agent or the engine could not produce the image; the message says why.
    """


@implementer(IBodyProducer, IStreamHandler)
class AgentTarProducer:
    """
    An HTTP request body fed by an agent's ``fs.download`` of ``path``: each
    DATA chunk is written to the consumer as it comes, and the agent gets
    credit back only while the consumer is not paused.  More than ``limit``
    bytes cancel the download and fail with L{TemplateTooLarge}.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, connection, path, limit):
        self._connection = connection
        self._path = path
        self._limit = limit
        self._stream = None
        self._consumer = None
        self._window = wire.ReceiveWindow()
        self._owed = 0
        self._paused = False
        self._done = None
        self.size = 0
        #: Why the body failed (the HTTP client wraps it), or None.
        self.error = None

    # IBodyProducer

    def startProducing(self, consumer):
        self._consumer = consumer
        self._done = Deferred(lambda d: self._cancel())
        self._stream = self._connection.openStream(self)
        self._connection.send(wire.request(self._stream, "fs.download", {"path": self._path}))
        return self._done

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._grant()

    def stopProducing(self):
        self._cancel()

    # IStreamHandler

    def frameReceived(self, frame):
        if self._done is None or self._done.called:
            return
        kind = frame.type
        if kind is wire.FrameType.DATA:
            self.size += len(frame.payload)
            if self.size > self._limit:
                self._cancel()
                self._finish(TemplateTooLarge(self._limit))
                return
            self._consumer.write(bytes(frame.payload))
            self._owed += len(frame.payload)
            if not self._paused:
                self._grant()
        elif kind is wire.FrameType.RESULT:
            self._connection.closeStream(self._stream)
            self._finish(None)
        elif kind is wire.FrameType.ERROR:
            self._connection.closeStream(self._stream)
            body = frame.json()
            self._finish(AgentCallError(body.pop("code", wire.Code.INTERNAL),
                                        body.pop("message", ""), body))

    def agentLost(self, stream, lost):
        self._finish(lost)

    # Inside

    def _grant(self):
        owed, self._owed = self._owed, 0
        increment = self._window.consumed(owed) if owed else 0
        if increment and self._connection.connected:
            self._connection.send(wire.window(self._stream, increment))

    def _cancel(self):
        if self._stream is not None and self._connection.connected:
            self._connection.send(wire.cancel(self._stream))
            self._connection.closeStream(self._stream)

    def _finish(self, error):
        done = self._done
        if done is None or done.called:
            return
        if error is None:
            done.callback(None)
        else:
            self.error = error
            done.errback(error)


def seed_directory_tar():
    """
    A small tar (bytes) holding the empty seed directory, extracted at "/"
    before the stream (the engine extracts only into existing directories).
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        parts = SEED_DIR.strip("/").split("/")
        for i in range(len(parts)):
            info = tarfile.TarInfo("/".join(parts[: i + 1]))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
    return out.getvalue()


class Baker:
    """
    Makes and removes template images through the engine client ``engine``
    (L{sandboxd.runtimes._engine.EngineClient}).  ``owner`` labels the
    images (as it labels containers) so each daemon knows its own.
    """

    log = Logger()

    def __init__(self, engine, owner=""):
        self._engine = engine
        self._owner = owner

    def image_name(self, template_id):
        return f"{REPOSITORY}:{template_id}"

    async def bake(self, connection, base_image, template_id, limit):
        """
        Stream the sandbox's /root (through its agent ``connection``) onto
        ``base_image`` as a new image named for ``template_id``; fire with
        (image name, tar bytes streamed).  Fail with L{TemplateTooLarge}
        or L{BakeFailed}; nothing is left behind either way.
        """
        engine = self._engine()
        image = self.image_name(template_id)
        try:
            created = await engine.call("POST", "/containers/create", body={
                "Image": base_image,
                "Labels": {"sandboxd.template": template_id, "sandboxd.owner": self._owner},
                "NetworkDisabled": True,
            })
        except EngineError as e:
            raise BakeFailed(f"cannot start baking on {base_image}: {e.message}") from e
        helper = path_part(created["Id"])
        producer = AgentTarProducer(connection, SAVED_PATHS[0], limit)
        try:
            await engine.upload("PUT", f"/containers/{helper}/archive", {"path": "/"},
                                BytesProducer(seed_directory_tar()), "application/x-tar")
            try:
                await engine.upload("PUT", f"/containers/{helper}/archive",
                                    {"path": SEED_DIR}, producer, "application/x-tar")
            except Exception:
                # The request fails when its producer does: say why.
                if producer.error is not None:
                    raise producer.error from None
                raise
            await engine.call("POST", "/commit", params={
                "container": created["Id"], "repo": REPOSITORY, "tag": template_id,
                "comment": f"sandboxd template {template_id}",
                "changes": f"LABEL sandboxd.template={template_id}",
            })
        except TemplateTooLarge:
            raise
        except AgentCallError as e:
            raise BakeFailed(f"the agent could not archive /root: {e.message}") from e
        except EngineError as e:
            raise BakeFailed(f"the engine could not bake the template: {e.message}") from e
        except Exception as e:
            raise BakeFailed(f"baking the template failed: {e}") from e
        finally:
            try:
                await engine.call("DELETE", f"/containers/{helper}", params={"force": "1"})
            except Exception:
                self.log.failure("cannot remove baking container {id}", id=created["Id"])
        return image, producer.size

    async def remove(self, image):
        """
        Remove a template image; one already gone counts as removed.
        """
        try:
            await self._engine().call("DELETE", f"/images/{path_part(image)}")
        except EngineError as e:
            if e.status != 404:
                raise

    async def present(self, image):
        try:
            await self._engine().call("GET", f"/images/{path_part(image)}/json")
        except EngineError as e:
            if e.status == 404:
                return False
            raise
        return True


async def seed(connection):
    """
    Fill a fresh sandbox's /root from its template image's seed (through
    its agent); BakeFailed if the copy fails.
    """
    result = await connection.call("process.exec", {"cmd": SEED_COMMAND})
    if result.get("exit_code") != 0:
        raise BakeFailed(
            f"cannot restore /root from the template: cp exited {result.get('exit_code')}"
        )
