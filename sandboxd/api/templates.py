"""
The template routes (docs/templates.md): ``POST /templates`` saves a
running sandbox, ``GET /templates``, ``GET`` and ``DELETE
/templates/{id}``; and the lookup ``POST /sandboxes {template}`` uses.

Which caller sees which template is decided in L{visible} alone.
"""

import json

from twisted.logger import Logger

from sandboxd.api.errors import ApiError, invalid_field
from sandboxd.api.requests import read_json_object
from sandboxd.templates.bake import BakeFailed, TemplateTooLarge
from sandboxd.templates.catalog import MAX_LABEL, TemplateError, template_json

log = Logger()


def caller_identity(request):
    """
    The identity a request acts as ("" for none).  Multi-tenancy (issue 15)
    replaces this with its verified caller identity.
    """
    return ""


def visible(template, identity):
    """
    May a caller acting as ``identity`` see and use ``template``?  Today
    every caller sees every template; with multi-tenancy, a caller sees
    its own identity's templates.
    """
    return True


def parse_save(body):
    """
    (sandbox_id, label) from a POST /templates body.
    """
    unknown = sorted(set(body) - {"sandbox_id", "label"})
    if unknown:
        raise invalid_field(unknown[0], "unknown field")
    values = []
    for name in ("sandbox_id", "label"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise invalid_field(name, "required, a non-empty string")
        values.append(value)
    if len(values[1]) > MAX_LABEL or not values[1].isprintable():
        raise invalid_field("label", f"at most {MAX_LABEL} printable characters")
    return tuple(values)


def _json(request, obj, status=200):
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(obj).encode()


class TemplateRoutes:
    """
    The handlers, given the catalog (L{sandboxd.templates.catalog
    .TemplateCatalog}, or None: the daemon serves no templates) and the
    manager.
    """

    def __init__(self, catalog, manager):
        self._catalog = catalog
        self._manager = manager

    def reload(self, limits):
        if self._catalog is not None:
            self._catalog.reload(limits)

    def _require(self):
        if self._catalog is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no templates")
        return self._catalog

    def lookup(self, request, template_id):
        """
        The template a caller named (for POST /sandboxes), marked used now;
        404 TEMPLATE_NOT_FOUND if it has none by that id.
        """
        catalog = self._require()
        template = catalog.get(template_id)
        if template is None or not visible(template, caller_identity(request)):
            raise ApiError(404, "TEMPLATE_NOT_FOUND", f"template {template_id} not found")
        return catalog.use(template_id)

    async def save(self, request):
        catalog = self._require()
        sandbox_id, label = parse_save(read_json_object(request))
        sandbox = self._manager.get(sandbox_id)
        if sandbox is None:
            raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
        try:
            template = await catalog.save(sandbox, label)
        except TemplateError as e:
            raise ApiError(e.status, e.code, e.message)
        except TemplateTooLarge as e:
            raise ApiError(413, "TEMPLATE_TOO_LARGE", str(e))
        except BakeFailed as e:
            raise ApiError(502, "TEMPLATE_FAILED", str(e))
        return _json(request, template_json(template), 201)

    def list(self, request):
        identity = caller_identity(request)
        return _json(request, [template_json(t) for t in self._require().all()
                               if visible(t, identity)])

    def _template(self, request, template_id):
        template = self._require().get(template_id)
        if template is None or not visible(template, caller_identity(request)):
            raise ApiError(404, "TEMPLATE_NOT_FOUND", f"template {template_id} not found")
        return template

    def get(self, request, template_id):
        return _json(request, template_json(self._template(request, template_id)))

    def delete(self, request, template_id):
        self._template(request, template_id)
        self._catalog.delete(template_id)
        request.setResponseCode(204)
        return b""


def install(app):
    """
    Add the template routes to the Klein ``app`` of SandboxAPI, whose
    instances hold a TemplateRoutes as ``templates``.
    """

    @app.route("/templates", methods=["POST"])
    async def saveTemplate(self, request):
        return await self.templates.save(request)

    @app.route("/templates", methods=["GET"])
    def listTemplates(self, request):
        return self.templates.list(request)

    @app.route("/templates/<template_id>", methods=["GET"])
    def getTemplate(self, request, template_id):
        return self.templates.get(request, template_id)

    @app.route("/templates/<template_id>", methods=["DELETE"])
    def deleteTemplate(self, request, template_id):
        return self.templates.delete(request, template_id)
