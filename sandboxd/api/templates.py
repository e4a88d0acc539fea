"""
The template routes (docs/templates.md): ``POST /templates`` saves a
running sandbox, ``GET /templates``, ``GET`` and ``DELETE
/templates/{id}``; and the lookup ``POST /sandboxes {template}`` uses.

A caller sees its own identity's templates (the operator every one): the
same rule as for sandboxes (L{sandboxd.api.identity.may_see}); another
tenant's template answers exactly as a missing one.  A tenant's
``X-Sandbox-Max-Templates`` quota caps its templates below
``limits.max_templates``.
"""

import json
import os
import posixpath

from twisted.logger import Logger

from sandboxd.api.answers import json_answer
from sandboxd.api.errors import ApiError, invalid_field, sandbox_paused
from sandboxd.api.identity import caller_identity, caller_tenant, may_see
from sandboxd.api.requests import read_json_object
from twisted.web.client import FileBodyProducer

from sandboxd.sandbox import State
from sandboxd.templates.bake import BakeFailed, TemplateTooLarge
from sandboxd.templates.build import BuildFailed
from sandboxd.templates.catalog import MAX_LABEL, TemplateError, template_json

log = Logger()


def visible(template, identity):
    """
    May a caller acting as ``identity`` see and use ``template``?
    """
    return may_see(identity, template.identity)


#: Seconds a 429 on a template limit asks the caller to wait: the limit
#: clears only when a template is deleted or expires.
LIMIT_RETRY_AFTER = 60


def _named(error):
    """
    The API error for a TemplateError (a 429 says when to try again).
    """
    headers = {"Retry-After": str(LIMIT_RETRY_AFTER)} if error.status == 429 else None
    return ApiError(error.status, error.code, error.message, headers=headers)


def template_quota(request):
    """
    The caller's own cap on its templates (``X-Sandbox-Max-Templates``), or
    None.
    """
    tenant = caller_tenant(request)
    return tenant.quotas.max_templates if tenant is not None else None


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


def parse_build(request):
    """
    (label, dockerfile) from the query of a POST /templates/build.
    """
    def arg(name, default=None):
        values = request.args.get(name.encode(), [])
        if not values:
            return default
        try:
            return values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_field(name, "must be UTF-8")

    label = arg("label")
    if not label or len(label) > MAX_LABEL or not label.isprintable():
        raise invalid_field("label", f"required, at most {MAX_LABEL} printable characters")
    dockerfile = arg("dockerfile", "Dockerfile")
    normal = posixpath.normpath(dockerfile)
    if (not dockerfile or normal.startswith(("/", "..")) or "\0" in dockerfile
            or not dockerfile.isprintable()):
        raise invalid_field("dockerfile", "a relative path inside the context")
    return label, normal


def _size(content):
    content.seek(0, os.SEEK_END)
    size = content.tell()
    content.seek(0)
    return size


class TemplateRoutes:
    """
    The handlers, given the catalog (L{sandboxd.templates.catalog
    .TemplateCatalog}, or None: the daemon serves no templates) and the
    manager.
    """

    def __init__(self, catalog, manager, builder=None, limits=None):
        self._catalog = catalog
        self._manager = manager
        self._builder = builder
        self._limits = limits

    def reload(self, limits):
        self._limits = limits
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
        if sandbox is None or not may_see(caller_identity(request), sandbox.identity):
            raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
        if sandbox.state is State.PAUSED:
            raise sandbox_paused(sandbox_id)
        try:
            template = await catalog.save(sandbox, label, quota=template_quota(request))
        except TemplateError as e:
            raise _named(e)
        except TemplateTooLarge as e:
            raise ApiError(413, "TEMPLATE_TOO_LARGE", str(e))
        except BakeFailed as e:
            raise ApiError(502, "TEMPLATE_FAILED", str(e))
        return json_answer(request, template_json(template), 201)

    async def build(self, request):
        """
        Build a template from the context tar in the body; the answer
        streams JSON lines: ``{"progress"}`` while building, then
        ``{"template"}`` or ``{"error": {code, message}}``.  Errors found
        before the build starts are plain error answers.
        """
        catalog = self._require()
        if self._builder is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon builds no templates")
        label, dockerfile = parse_build(request)
        size = _size(request.content)
        if self._limits is not None and size > self._limits.max_template_size:
            raise ApiError(413, "TEMPLATE_TOO_LARGE",
                           f"the build context ({size} bytes) exceeds max_template_size "
                           f"({self._limits.max_template_size} bytes)")
        streaming = []
        gone = []
        request.notifyFinish().addBoth(gone.append)

        def line(obj):
            if not streaming:
                streaming.append(True)
                request.setResponseCode(200)
                request.setHeader(b"Content-Type", b"application/x-ndjson")
            if not gone:
                request.write(json.dumps(obj).encode() + b"\n")

        try:
            template = await catalog.build(
                self._builder, label, caller_identity(request),
                FileBodyProducer(request.content), dockerfile,
                lambda text: line({"progress": text}), quota=template_quota(request))
        except TemplateError as e:
            error = _named(e)
        except BuildFailed as e:
            error = ApiError(422, "BUILD_FAILED", str(e))
        except BakeFailed as e:
            error = ApiError(502, "TEMPLATE_FAILED", str(e))
        else:
            if not streaming:
                return json_answer(request, {"template": template_json(template)}, 201)
            line({"template": template_json(template)})
            return b""
        if not streaming:
            raise error
        line({"error": {"code": error.code, "message": error.message}})
        return b""

    def list(self, request):
        identity = caller_identity(request)
        return json_answer(request, [template_json(t) for t in self._require().all()
                               if visible(t, identity)])

    def _template(self, request, template_id):
        template = self._require().get(template_id)
        if template is None or not visible(template, caller_identity(request)):
            raise ApiError(404, "TEMPLATE_NOT_FOUND", f"template {template_id} not found")
        return template

    def get(self, request, template_id):
        return json_answer(request, template_json(self._template(request, template_id)))

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

    @app.route("/templates/build", methods=["POST"])
    async def buildTemplate(self, request):
        return await self.templates.build(request)

    @app.route("/templates", methods=["GET"])
    def listTemplates(self, request):
        return self.templates.list(request)

    @app.route("/templates/<template_id>", methods=["GET"])
    def getTemplate(self, request, template_id):
        return self.templates.get(request, template_id)

    @app.route("/templates/<template_id>", methods=["DELETE"])
    def deleteTemplate(self, request, template_id):
        return self.templates.delete(request, template_id)
