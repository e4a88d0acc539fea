"""
The daemon's templates: saving a running sandbox as one, finding, using,
deleting and expiring them (docs/templates.md).

A template in use by live sandboxes can be deleted: its record is marked
deleted (callers no longer see it, its label is free) and its image goes
when the last of those sandboxes ends (this catalog observes the
lifecycle).  Unused templates expire ``limits.template_expiry_days`` after
they were last used, on the injected clock.
"""

import os

import attr
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State, iso_time
from sandboxd.templates.bake import seed
from sandboxd.templates.build import BASE_REPOSITORY
from sandboxd.templates.records import TemplateRecord

#: Seconds between two looks for expired templates.
EXPIRY_INTERVAL = 3600.0
#: Runtimes whose sandboxes can be saved (containers on the Docker engine).
SAVABLE_RUNTIMES = ("docker", "docker+gvisor")
#: The longest label.
MAX_LABEL = 128


class TemplateError(Exception):
    """
    A template request the catalog refuses; ``status`` and ``code`` are the
    API's answer.
    """

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def template_json(record):
    """
    The public shape of a template (docs/templates.md).
    """
    return {
        "id": record.id,
        "label": record.label,
        "image": record.image,
        "profile": record.profile,
        "runtime": record.runtime,
        "size": record.size,
        "created": iso_time(record.created),
        "last_used": iso_time(record.last_used),
        "identity": record.identity,
    }


@implementer(ISandboxObserver)
class TemplateCatalog:
    """
    Templates recorded in ``records`` (a TemplateStore), images made and
    removed by ``baker`` (a L{sandboxd.templates.bake.Baker}), limits from
    ``limits`` (the config's [limits]), events through ``record(type,
    sandbox_id, data, identity)``, live sandboxes from ``sandboxes()``;
    ``forget(template_id)``, if given, stops a deleted template's warm pool.
    """

    log = Logger()

    def __init__(self, clock, records, baker, limits, record, sandboxes, forget=None):
        self._clock = clock
        self._records = records
        self._baker = baker
        self._limits = limits
        self._record = record
        self._sandboxes = sandboxes
        self._forget = forget
        self._templates = {r.id: r for r in records.all()}
        self._saving = {}
        self._expiry = None

    # Life

    def start(self, interval=EXPIRY_INTERVAL):
        """
        Remove the images of deleted templates nobody uses any more, and
        expire unused templates now and every ``interval`` seconds.
        """
        for template in list(self._templates.values()):
            if template.deleted:
                self._release(template)
        self._expiry = LoopingCall(self.expire)
        self._expiry.clock = self._clock
        self._expiry.start(interval, now=True).addErrback(
            lambda f: self.log.failure("template expiry stopped", f))

    def stop(self):
        if self._expiry is not None and self._expiry.running:
            self._expiry.stop()

    def reload(self, limits):
        self._limits = limits

    # Queries

    def all(self):
        """
        The templates callers may see (not deleted), oldest first.
        """
        return sorted((t for t in self._templates.values() if not t.deleted),
                      key=lambda t: (t.created, t.id))

    def get(self, template_id):
        template = self._templates.get(template_id)
        if template is None or template.deleted:
            return None
        return template

    def users(self, template_id):
        return [s for s in self._sandboxes() if s.template == template_id and s.alive]

    # Saving

    async def save(self, sandbox, label, quota=None):
        """
        Save ``sandbox``'s /root as a new template labelled ``label``
        (unique among its identity's templates); fire with its record.
        ``quota``: the identity's own cap on its templates, or None.
        """
        identity = sandbox.identity or ""
        if sandbox.state not in (State.RUNNING, State.DISCONNECTED):
            raise TemplateError(409, "SANDBOX_NOT_RUNNING",
                                f"sandbox {sandbox.id} is {sandbox.state.value}")
        if sandbox.runtime not in SAVABLE_RUNTIMES:
            raise TemplateError(422, "NOT_SUPPORTED",
                                f"sandboxes on runtime {sandbox.runtime} cannot be saved "
                                f"as templates (only {', '.join(SAVABLE_RUNTIMES)})")
        template_id = self._reserve(identity, label, quota)
        base = sandbox.image
        if sandbox.template is not None and sandbox.template in self._templates:
            base = self._templates[sandbox.template].base_image
        try:
            image, size = await self._baker.bake(
                sandbox.connection, base, template_id, self._limits.max_template_size)
        finally:
            del self._saving[template_id]
        self.log.info("saved sandbox {sandbox} as template {template} ({size} bytes)",
                      sandbox=sandbox.id, template=template_id, size=size)
        return self._add(TemplateRecord(
            id=template_id, label=label, image=image, base_image=base,
            profile=sandbox.profile, runtime=sandbox.runtime, size=size,
            created=0, last_used=0, identity=identity,
        ), sandbox.id)

    async def build(self, builder, label, identity, context, dockerfile, progress,
                    profile="default", runtime="docker", quota=None):
        """
        Build a template from a Dockerfile (``builder``: a
        L{sandboxd.templates.build.Builder}; ``context``: an IBodyProducer
        of the context tar); fire with its record.
        """
        template_id = self._reserve(identity, label, quota)
        try:
            image, base, size = await builder.build(template_id, context, dockerfile, progress)
        finally:
            del self._saving[template_id]
        return self._add(TemplateRecord(
            id=template_id, label=label, image=image, base_image=base, profile=profile,
            runtime=runtime, size=size, created=0, last_used=0, identity=identity,
        ), None)

    def _reserve(self, identity, label, quota=None):
        """
        A new template id for ``label`` of ``identity``, held while it is
        made; LABEL_TAKEN, TEMPLATE_LIMIT (limits.max_templates) or
        QUOTA_EXCEEDED (the identity's own ``quota``, when lower).
        """
        mine = [t for t in self.all() if t.identity == identity]
        pending = [p for p in self._saving.values() if p[0] == identity]
        if label in {t.label for t in mine} | {p[1] for p in pending}:
            raise TemplateError(409, "LABEL_TAKEN", f"a template is already labelled {label!r}")
        limit, code, name = self._limits.max_templates, "TEMPLATE_LIMIT", "limits.max_templates"
        if quota is not None and quota < limit:
            limit, code, name = quota, "QUOTA_EXCEEDED", "X-Sandbox-Max-Templates"
        if len(mine) + len(pending) >= limit:
            raise TemplateError(429, code,
                                f"{len(mine)} templates exist: the limit is {limit} ({name})")
        template_id = f"tpl-{os.urandom(4).hex()}"
        self._saving[template_id] = (identity, label)
        return template_id

    def _add(self, template, sandbox_id):
        now = self._clock.seconds()
        template = attr.evolve(template, created=now, last_used=now)
        self._templates[template.id] = template
        self._records.put(template)
        self._record("template.created", sandbox_id,
                     {"template": template.id, "label": template.label, "size": template.size},
                     template.identity)
        return template

    # Using

    def use(self, template_id):
        """
        A sandbox is being made from the template: it was used now.
        """
        template = self._templates[template_id]
        template = attr.evolve(template, last_used=self._clock.seconds())
        self._templates[template_id] = template
        self._records.put(template)
        return template

    @staticmethod
    async def seed(sandbox):
        """
        Fill a fresh sandbox's /root from its template's image.
        """
        await seed(sandbox.connection)

    # Deleting and expiring

    def delete(self, template_id, event="template.deleted"):
        """
        The template is gone for callers now; its image goes when no live
        sandbox uses it.  Return False if there was no such template.
        """
        template = self.get(template_id)
        if template is None:
            return False
        template = attr.evolve(template, deleted=True)
        self._templates[template_id] = template
        self._records.put(template)
        self._record(event, None, {"template": template_id, "label": template.label},
                     template.identity)
        if self._forget is not None:
            self._forget(template_id)
        self._release(template)
        return True

    def expire(self):
        """
        Delete every template unused for ``limits.template_expiry_days``.
        """
        cutoff = self._clock.seconds() - self._limits.template_expiry_days * 86400
        for template in self.all():
            if template.last_used < cutoff:
                self.log.info("template {template} expired", template=template.id)
                self.delete(template.id, "template.expired")

    def _release(self, template):
        """
        Remove a deleted template's image and record if nobody uses it.
        """
        if self.users(template.id):
            return
        self._templates.pop(template.id, None)
        d = ensureDeferred(self._baker.remove(template.image))
        if template.base_image.startswith(f"{BASE_REPOSITORY}:"):
            # A built template's agent stage goes with it.
            d.addCallback(lambda _: ensureDeferred(self._baker.remove(template.base_image)))

        def removed(_):
            if template.id not in self._templates:
                self._records.delete(template.id)

        def kept(failure):
            # A container of a sandbox just destroyed may still hold it: the
            # next user's end (or the next start) tries again.
            self._templates.setdefault(template.id, template)
            self.log.warn("cannot remove the image of template {template} yet: {error}",
                          template=template.id, error=failure.getErrorMessage())

        d.addCallbacks(removed, kept)
        d.addErrback(lambda f: self.log.failure("forgetting template {template}", f,
                                                template=template.id))

    # ISandboxObserver

    def sandboxChanged(self, transition):
        sandbox = transition.sandbox
        if sandbox.template is None or transition.new is not State.DESTROYED:
            return
        template = self._templates.get(sandbox.template)
        if template is not None and template.deleted:
            self._release(template)
