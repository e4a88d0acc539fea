"""
The OpenAPI document (sandboxd/api/openapi.py) against the routes the Klein
app really has: every route and method described, nothing described that
is not served, every error response in the error shape, and served at
``GET /openapi.json``.
"""

import json
import re

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sandboxd.api import openapi
from sandboxd.api.app import SandboxAPI
from sandboxd.config import Config
from tests.test_events import NoManager

_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_OPERATIONS = {"get", "put", "post", "delete", "patch"}


def klein_routes(app=SandboxAPI.app):
    """
    {(METHOD, "/path/{param}")} of a Klein app, read from its werkzeug map.
    """
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - _IGNORED_METHODS:
            routes.add((method, path))
    return routes


def described_routes(document):
    return {(method.upper(), path)
            for path, item in document["paths"].items()
            for method in item if method in _OPERATIONS}


class CoverageTests(SynchronousTestCase):
    def test_every_route_described(self):
        """
        Every (method, path) Klein serves has an operation in the document;
        a new route without one fails here, named.
        """
        missing = klein_routes() - described_routes(openapi.document())
        self.assertEqual(missing, set(), f"routes with no OpenAPI entry: {sorted(missing)}")

    def test_nothing_else_described(self):
        """
        The document describes no route the app does not serve.
        """
        extra = described_routes(openapi.document()) - klein_routes()
        self.assertEqual(extra, set(), f"OpenAPI entries with no route: {sorted(extra)}")

    def test_path_parameters_declared(self):
        """
        Each {param} in a path is declared as a path parameter.
        """
        for path, item in openapi.document()["paths"].items():
            wanted = set(re.findall(r"{([^}]+)}", path))
            for method, operation in item.items():
                declared = {p["name"] for p in operation.get("parameters", [])
                            if p["in"] == "path"}
                self.assertEqual(declared, wanted, f"{method.upper()} {path}")

    def test_errors_have_error_shape(self):
        """
        Every 4xx/5xx response with a JSON body refers to the Error schema,
        and operation ids are unique.
        """
        ids = []
        for path, item in openapi.document()["paths"].items():
            for method, operation in item.items():
                ids.append(operation["operationId"])
                for status, response in operation["responses"].items():
                    content = response.get("content", {}).get("application/json")
                    if status[0] in "45" and content is not None:
                        self.assertEqual(content["schema"],
                                         {"$ref": "#/components/schemas/Error"},
                                         f"{method.upper()} {path} {status}")
        self.assertEqual(len(ids), len(set(ids)))

    def test_refs_resolve(self):
        """
        Every $ref names a schema in components.
        """
        document = openapi.document()
        refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
        self.assertTrue(refs)
        self.assertEqual(set(refs) - set(document["components"]["schemas"]), set())


class ServedTests(TestCase):
    async def test_served(self):
        """
        GET /openapi.json answers the document as JSON, version 3.1.
        """
        api = SandboxAPI(NoManager(), Config(), Clock())
        response = await StubTreq(api.resource()).get("http://localhost/openapi.json")
        self.assertEqual(response.code, 200)
        body = json.loads(await response.content())
        self.assertEqual(body["openapi"], "3.1.0")
        self.assertEqual(described_routes(body), klein_routes())
