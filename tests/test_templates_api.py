"""
Templates in the warm pool (PoolSet with a fake boot on a Clock) and the
template routes (StubTreq over a fake manager and a real catalog).
"""

import attr
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd.templates.catalog import TemplateCatalog
from sandboxd.templates.records import TemplateStore
from tests.test_templates import FakeBaker, sandbox


class TemplatePoolTests(TestCase):
    """
    PoolSet with templates: planned like profiles with floor
    pool.min_per_image while used within the window (a fake boot on a Clock).
    """

    def setUp(self):
        from sandboxd.config import parse_config
        from sandboxd.pools import PoolSet
        from tests.test_poolplan import FakeSandbox

        self.clock = Clock()
        self.config = parse_config(
            "[pool]\ntotal_warm = 2\nmin_base = 1\nmin_per_image = 2\nmax_warm = 8\n"
            'rebalance_window = "10m"\nhealth_interval = "10s"\n')
        self.booted = []
        self.discarded = []

        def boot(profile):
            self.booted.append(profile.name)
            return succeed(FakeSandbox(f"{profile.name}-{len(self.booted)}"))

        self.pools = PoolSet(dict(self.config.profiles), self.config.pool, boot,
                             self.discarded.append, self.clock)
        self.pools.start()
        self.profile = self.templateProfile("tpl-0000000a")

    def templateProfile(self, template_id):
        from sandboxd.templates.records import TemplateRecord
        from sandboxd.templates.warm import TemplateProfile

        record = TemplateRecord(id=template_id, label="x", image=f"sandboxd-template:{template_id}",
                                base_image="b", profile="default", runtime="docker", size=1,
                                created=0, last_used=0)
        return TemplateProfile.of(record, self.config.profiles["default"])

    def test_first_use_misses_then_hits(self):
        """
        The first create from a template misses and starts its pool, which
        boots min_per_image sandboxes of the template's image (their
        template named); the next create is a hit.
        """
        self.assertIsNone(self.pools.claimTemplate(self.profile))
        self.clock.advance(1)
        # The floor, plus what the plan adds for the demand and the miss.
        ready = self.pools.status()["tpl-0000000a"]["ready"]
        self.assertGreaterEqual(ready, 2)
        self.assertEqual(self.booted.count("tpl-0000000a"), ready)
        self.assertIsNotNone(self.pools.claimTemplate(self.profile))
        self.assertEqual(self.pools.status()["tpl-0000000a"]["hits"], 1)

    def test_unused_template_pool_goes(self):
        """
        A template not used within rebalance_window loses its pool at the
        next tick, its warm sandboxes discarded; deleting a template drops
        its pool at once.
        """
        self.pools.claimTemplate(self.profile)
        other = self.templateProfile("tpl-0000000b")
        self.clock.advance(1)
        self.clock.advance(600)
        self.assertNotIn("tpl-0000000a", self.pools.status())
        self.assertEqual(len([s for s in self.discarded if s.id.startswith("tpl-0000000a")]),
                         self.booted.count("tpl-0000000a"))
        self.pools.claimTemplate(other)
        self.clock.advance(1)
        self.pools.dropTemplate("tpl-0000000b")
        self.assertNotIn("tpl-0000000b", self.pools.status())
        self.assertIn("default", self.pools.status())

    def test_off_without_min_per_image(self):
        """
        With min_per_image 0 (the default) templates get no pool: every
        create from one is cold.
        """
        self.pools.reload(self.config.profiles, attr.evolve(self.config.pool, min_per_image=0))
        self.assertIsNone(self.pools.claimTemplate(self.profile))
        self.assertNotIn("tpl-0000000a", self.pools.status())


class TemplateRouteTests(TestCase):
    """
    The template routes (sandboxd/api/templates.py) over StubTreq, a fake
    manager and a real catalog with a fake baker.
    """

    def setUp(self):
        from treq.testing import StubTreq

        from sandboxd.api.app import SandboxAPI
        from sandboxd.config import parse_config
        from tests.test_api import FakeManager

        self.config = parse_config("[limits]\nmax_templates = 1\n")
        self.manager = FakeManager(self.config)
        self.source = sandbox("sbx-0000000f")
        self.manager.sandboxes[self.source.id] = self.source
        self.clock = Clock()
        self.catalog = TemplateCatalog(
            self.clock, TemplateStore(self.mktemp()), FakeBaker(), self.config.limits,
            lambda *args: None, lambda: list(self.manager.sandboxes.values()))
        self.treq = StubTreq(SandboxAPI(self.manager, self.config, self.clock,
                                        templates=self.catalog).resource())

    async def call(self, method, path, body=None):
        import json

        data = json.dumps(body).encode() if body is not None else None
        response = await self.treq.request(method, "http://sandboxd" + path, data=data)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def test_save_get_list_delete(self):
        """
        POST /templates answers 201 with the template; GET and the list
        show it; a create from it passes the record to the manager; DELETE
        answers 204, then GET is 404 TEMPLATE_NOT_FOUND.
        """
        status, template = await self.call(
            "POST", "/templates", {"sandbox_id": self.source.id, "label": "env"})
        self.assertEqual(status, 201, template)
        self.assertEqual(await self.call("GET", f"/templates/{template['id']}"),
                         (200, template))
        self.assertEqual(await self.call("GET", "/templates"), (200, [template]))
        await self.call("POST", "/sandboxes", {"template": template["id"]})
        self.assertEqual(self.manager.created[-1]["template"].id, template["id"])
        self.assertEqual((await self.call("DELETE", f"/templates/{template['id']}"))[0], 204)
        status, body = await self.call("GET", f"/templates/{template['id']}")
        self.assertEqual((status, body["error"]["code"]), (404, "TEMPLATE_NOT_FOUND"))

    async def test_refusals_are_named(self):
        """
        Bad bodies are 400 INVALID_FIELD, an unknown sandbox 404
        SANDBOX_NOT_FOUND, a create from an unknown template 404
        TEMPLATE_NOT_FOUND, past max_templates 429 TEMPLATE_LIMIT, a build
        without a label or with an escaping Dockerfile path 400.
        """
        cases = [
            ("POST", "/templates", {"sandbox_id": self.source.id}, 400, "INVALID_FIELD"),
            ("POST", "/templates", {"sandbox_id": self.source.id, "label": "x" * 129},
             400, "INVALID_FIELD"),
            ("POST", "/templates", {"sandbox_id": "sbx-nope", "label": "a"},
             404, "SANDBOX_NOT_FOUND"),
            ("POST", "/templates", {"sandbox_id": self.source.id, "label": "a", "x": 1},
             400, "INVALID_FIELD"),
            ("POST", "/sandboxes", {"template": "tpl-00000000"}, 404, "TEMPLATE_NOT_FOUND"),
            ("POST", "/templates/build", None, 501, "NOT_AVAILABLE"),
        ]
        for method, path, body, status, code in cases:
            got, parsed = await self.call(method, path, body)
            self.assertEqual((got, parsed["error"]["code"]), (status, code), (path, body))
        await self.call("POST", "/templates", {"sandbox_id": self.source.id, "label": "a"})
        got, parsed = await self.call(
            "POST", "/templates", {"sandbox_id": self.source.id, "label": "b"})
        self.assertEqual((got, parsed["error"]["code"]), (429, "TEMPLATE_LIMIT"))

    def test_build_parameters(self):
        """
        parse_build wants a label and a Dockerfile path inside the context.
        """
        from sandboxd.api.errors import ApiError
        from sandboxd.api.templates import parse_build

        class Request:
            def __init__(self, **args):
                self.args = {k.encode(): [v.encode()] for k, v in args.items()}

        self.assertEqual(parse_build(Request(label="a")), ("a", "Dockerfile"))
        self.assertEqual(parse_build(Request(label="a", dockerfile="d/../x/Dockerfile")),
                         ("a", "x/Dockerfile"))
        for args in ({}, {"label": "a", "dockerfile": "../Dockerfile"},
                     {"label": "a", "dockerfile": "/etc/Dockerfile"}):
            self.assertRaises(ApiError, parse_build, Request(**args))
