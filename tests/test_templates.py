"""
Templates without an engine: the catalog's limits, labels, deletion of a
template in use, expiry on a Clock and its records surviving a restart
(a real SQLite file); and the producer that streams an agent's tar to the
engine (window credit only while the engine reads, the size cap mid-stream).
"""

import attr
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from agent import wire
from sandboxd.config import LimitsConfig as Limits
from sandboxd.lifecycle import Transition
from sandboxd.protocols.agent import IAgentConnection, IStreamHandler
from sandboxd.sandbox import Sandbox, State
from sandboxd.templates.bake import AgentTarProducer, TemplateTooLarge
from sandboxd.templates.catalog import TemplateCatalog, TemplateError, template_json
from sandboxd.templates.records import TemplateStore

DAY = 86400


class FakeBaker:
    """
    Bakes nothing: names the image and remembers removals.
    """

    def __init__(self):
        self.baked = []
        self.removed = []
        self.refuse = 0

    async def bake(self, connection, base_image, template_id, limit):
        self.baked.append((base_image, template_id, limit))
        return f"sandboxd-template:{template_id}", 4096

    async def remove(self, image):
        if self.refuse:
            self.refuse -= 1
            raise RuntimeError("image is being used by a stopped container")
        self.removed.append(image)


def sandbox(sandbox_id="sbx-00000001", template=None, state=State.RUNNING, identity=""):
    return Sandbox(id=sandbox_id, profile="default", image="sandbox-base:latest",
                   runtime="docker", memory=1 << 28, cpu=1.0, storage=1 << 29, secret="s",
                   template=template, state=state, identity=identity)


class CatalogTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.dir = self.mktemp()
        self.baker = FakeBaker()
        self.events = []
        self.live = []
        self.catalog = self.make(Limits(max_templates=2, template_expiry_days=3))

    def make(self, limits):
        return TemplateCatalog(
            self.clock, TemplateStore(self.dir), self.baker, limits,
            lambda type, sid, data, identity: self.events.append((type, sid, data, identity)),
            lambda: list(self.live),
        )

    def refused(self, sandbox, label):
        return self.assertFailure(ensureDeferred(self.catalog.save(sandbox, label)),
                                  TemplateError)

    async def test_save_records_and_announces(self):
        """
        A save bakes on the sandbox's image with the configured size cap,
        records the template (public shape with tpl-<8 hex> id, size,
        times, identity) and records template.created.
        """
        template = await self.catalog.save(sandbox(identity="team-a"), "env")
        self.assertRegex(template.id, r"^tpl-[0-9a-f]{8}$")
        self.assertEqual(self.baker.baked,
                         [("sandbox-base:latest", template.id, Limits().max_template_size)])
        shape = template_json(template)
        self.assertEqual((shape["label"], shape["size"], shape["identity"], shape["image"]),
                         ("env", 4096, "team-a", f"sandboxd-template:{template.id}"))
        self.assertEqual(self.catalog.all(), [template])
        self.assertEqual(self.events[-1][0], "template.created")

    async def test_labels_unique_and_limit(self):
        """
        A second template with a taken label is 409 LABEL_TAKEN; past
        max_templates a save is 429 TEMPLATE_LIMIT, and nothing is baked.
        """
        await self.catalog.save(sandbox(), "one")
        error = await self.refused(sandbox(), "one")
        self.assertEqual((error.status, error.code), (409, "LABEL_TAKEN"))
        await self.catalog.save(sandbox(), "two")
        error = await self.refused(sandbox(), "three")
        self.assertEqual((error.status, error.code), (429, "TEMPLATE_LIMIT"))
        self.assertIn("limits.max_templates", error.message)
        self.assertEqual(len(self.baker.baked), 2)

    async def test_only_running_containers_are_saved(self):
        """
        A failed sandbox is 409 SANDBOX_NOT_RUNNING; a VM sandbox is 422
        NOT_SUPPORTED.
        """
        error = await self.refused(sandbox(state=State.FAILED), "x")
        self.assertEqual(error.code, "SANDBOX_NOT_RUNNING")
        vm = attr.evolve(sandbox(), runtime="qemu")
        error = await self.refused(vm, "x")
        self.assertEqual((error.status, error.code), (422, "NOT_SUPPORTED"))

    async def test_template_of_a_template_bakes_on_the_base(self):
        """
        Saving a sandbox made from a template bakes on the original base
        image (the seed holds all of /root: no stale files below it).
        """
        first = await self.catalog.save(sandbox(), "one")
        derived = attr.evolve(sandbox("sbx-2"), template=first.id, image=first.image)
        await self.catalog.save(derived, "two")
        self.assertEqual(self.baker.baked[-1][0], "sandbox-base:latest")

    async def test_delete_unused_removes_the_image(self):
        """
        Deleting a template nobody uses removes its image and its record.
        """
        template = await self.catalog.save(sandbox(), "one")
        self.assertTrue(self.catalog.delete(template.id))
        self.assertEqual(self.baker.removed, [template.image])
        self.assertIsNone(self.catalog.get(template.id))
        self.assertEqual(TemplateStore(self.dir).all(), [])
        self.assertEqual(self.events[-1][0], "template.deleted")
        self.assertFalse(self.catalog.delete(template.id))

    async def test_delete_in_use_waits_for_the_last_user(self):
        """
        A template in use is gone for callers at once (its label free);
        its image goes when its last sandbox is destroyed, not before.
        """
        template = await self.catalog.save(sandbox(), "one")
        users = [sandbox(f"sbx-{i}", template=template.id) for i in (1, 2)]
        self.live.extend(users)
        self.catalog.delete(template.id)
        self.assertEqual((self.catalog.all(), self.baker.removed), ([], []))
        await self.catalog.save(sandbox(), "one")  # the label is free
        for user in users:
            self.live.remove(user)
            user.state = State.DESTROYED
            self.catalog.sandboxChanged(
                Transition(user, State.DESTROYING, State.DESTROYED, None))
            if user is users[0]:
                self.assertEqual(self.baker.removed, [])
        self.assertEqual(self.baker.removed, [template.image])

    async def test_removal_refused_is_tried_again(self):
        """
        An image the engine will not remove yet (a destroyed sandbox's
        container still holds it) is removed at the next user's end.
        """
        template = await self.catalog.save(sandbox(), "one")
        self.baker.refuse = 1
        self.catalog.delete(template.id)
        self.assertEqual(self.baker.removed, [])
        self.assertIsNone(self.catalog.get(template.id))
        user = sandbox("sbx-1", template=template.id, state=State.DESTROYED)
        self.catalog.sandboxChanged(Transition(user, State.DESTROYING, State.DESTROYED, None))
        self.assertEqual(self.baker.removed, [template.image])
        self.assertEqual(TemplateStore(self.dir).all(), [])

    async def test_expiry_on_the_clock(self):
        """
        A template unused for template_expiry_days is deleted with
        template.expired; one used meanwhile is kept.
        """
        old = await self.catalog.save(sandbox(), "old")
        used = await self.catalog.save(sandbox(), "used")
        self.catalog.start(interval=3600)
        self.clock.advance(2 * DAY)
        self.catalog.use(used.id)
        self.clock.advance(DAY + 3600)
        self.assertEqual([t.id for t in self.catalog.all()], [used.id])
        self.assertIn(("template.expired", None, {"template": old.id, "label": "old"}, ""),
                      self.events)
        self.assertEqual(self.baker.removed, [old.image])
        self.catalog.stop()

    async def test_records_survive_a_restart(self):
        """
        A new catalog on the same data dir knows the templates; a template
        deleted while in use whose users are gone has its image removed
        at start.
        """
        kept = await self.catalog.save(sandbox(), "kept")
        gone = await self.catalog.save(sandbox(), "gone")
        self.live.append(sandbox("sbx-9", template=gone.id))
        self.catalog.delete(gone.id)
        self.live.clear()
        again = self.make(Limits())
        self.assertEqual([t.id for t in again.all()], [kept.id])
        again.start()
        self.assertEqual(self.baker.removed, [gone.image])
        self.assertEqual([t.id for t in TemplateStore(self.dir).all()], [kept.id])
        again.stop()


@implementer(IAgentConnection)
class FakeConnection:
    """
    Records what the producer sends; ``connected`` stays True.
    """

    connected = True

    def __init__(self):
        self.sent = []
        self.handlers = {}
        self.closed = []

    def openStream(self, handler):
        stream = len(self.handlers) + 1
        self.handlers[stream] = handler
        return stream

    def closeStream(self, stream):
        self.closed.append(stream)

    def reassign(self, stream, handler):
        pass

    def send(self, data):
        self.sent.append(wire.decode_one(data))

    def call(self, method, params=None):
        return succeed({})

    def ping(self, timeout):
        return succeed(True)

    def whenLost(self):
        return Deferred()

    def disconnect(self, reason=""):
        pass

    def abort(self, reason):
        pass


class Consumer:
    def __init__(self):
        self.data = []

    def write(self, data):
        self.data.append(data)


def frames(connection):
    return connection.sent


class ProducerTests(TestCase):
    def setUp(self):
        self.connection = FakeConnection()
        verifyObject(IAgentConnection, self.connection)

    def test_streams_with_credit_only_while_read(self):
        """
        The producer asks fs.download of /root; DATA goes to the consumer
        as it comes; credit (WINDOW) goes back only while not paused, and
        what was held back is granted on resume; RESULT ends the body.
        """
        producer = AgentTarProducer(self.connection, "/root", 1 << 30)
        verifyObject(IBodyProducer, producer)
        verifyObject(IStreamHandler, producer)
        consumer = Consumer()
        done = producer.startProducing(consumer)
        request = frames(self.connection)[0]
        self.assertEqual((request.type, request.json()["method"]),
                         (wire.FrameType.REQUEST, "fs.download"))
        stream = request.stream
        half = wire.INITIAL_WINDOW // 2
        producer.pauseProducing()
        producer.frameReceived(wire.Frame(wire.FrameType.DATA, stream, b"x" * half))
        self.assertEqual(len(frames(self.connection)), 1)
        producer.resumeProducing()
        grant = frames(self.connection)[-1]
        self.assertEqual((grant.type, grant.window()), (wire.FrameType.WINDOW, half))
        producer.frameReceived(wire.Frame(wire.FrameType.RESULT, stream, b'{"size": 1}'))
        self.assertEqual(b"".join(consumer.data), b"x" * half)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(producer.size, half)

    def test_size_cap_cancels_mid_stream(self):
        """
        One byte past the limit: the download is cancelled (CANCEL sent,
        stream closed), the body fails with TemplateTooLarge, and the
        chunk past the cap never reaches the consumer.
        """
        producer = AgentTarProducer(self.connection, "/root", 1000)
        consumer = Consumer()
        done = producer.startProducing(consumer)
        stream = frames(self.connection)[0].stream
        producer.frameReceived(wire.Frame(wire.FrameType.DATA, stream, b"a" * 600))
        producer.frameReceived(wire.Frame(wire.FrameType.DATA, stream, b"b" * 401))
        self.assertEqual(b"".join(consumer.data), b"a" * 600)
        self.assertEqual(frames(self.connection)[-1].type, wire.FrameType.CANCEL)
        self.assertIn(stream, self.connection.closed)
        failure = self.failureResultOf(done, TemplateTooLarge)
        self.assertIn("1000 bytes", str(failure.value))

    def test_agent_error_fails_the_body(self):
        """
        An ERROR from the agent fails the body with its code.
        """
        producer = AgentTarProducer(self.connection, "/root", 1000)
        done = producer.startProducing(Consumer())
        stream = frames(self.connection)[0].stream
        producer.frameReceived(wire.Frame(
            wire.FrameType.ERROR, stream, b'{"code": "NOT_FOUND", "message": "gone"}'))
        self.assertEqual(self.failureResultOf(done).value.code, "NOT_FOUND")
