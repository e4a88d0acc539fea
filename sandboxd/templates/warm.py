"""
Templates in the warm pool: a template's pool is planned like a profile's
(sandboxd/poolplan.py, floor ``pool.min_per_image``), keyed by the template
id, its sandboxes booted from the template's image with /root filled.
"""

import attrs


@attrs.frozen
class TemplateProfile:
    """
    What a template's pool boots: the shape of the profile the template
    was saved from (``profile``), the template's image and runtime.  Its
    ``name`` is the template id: the pool's key, and the warm sandboxes'
    profile until one is handed out (then it is ``profile``).
    """

    name: str
    profile: str
    image: str
    memory: int
    cpu: float
    storage: int
    runtime: str

    @property
    def template(self):
        return self.name

    @classmethod
    def of(cls, template, profile):
        """
        The pool of ``template`` (a TemplateRecord) in the shape of ``profile``.
        """
        return cls(name=template.id, profile=profile.name, image=template.image,
                   memory=profile.memory, cpu=profile.cpu, storage=profile.storage,
                   runtime=template.runtime)
