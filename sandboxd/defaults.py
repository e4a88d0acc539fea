"""
The profiles a daemon started without a configuration file offers: one
for each sandbox image `make images` builds (base, python, node, full, as
config/sandboxd.example.toml writes them) whose image the engine has.

``Config()`` itself keeps only ``default`` (the configuration is read
without I/O); the daemon starts with it, asks the engine which images are
present, and adds the other profiles through the hot-reload path
(sandboxd/reload.py), so their warm pools fill after the base one.  Each
keeps ``pool.min_base`` (2) warm: an idle agent costs about 15 MB, and the
heavier images boot slowest cold.
"""

import os
from types import MappingProxyType

import attrs

from sandboxd.config import Profile, load_config, parse_size

BUILTIN_PROFILES = MappingProxyType({
    "default": Profile(),
    "python": Profile(name="python", image="sandbox-python:latest",
                      memory=parse_size("1g"), storage=parse_size("1g")),
    "node": Profile(name="node", image="sandbox-node:latest", storage=parse_size("1g")),
    "full": Profile(name="full", image="sandbox-full:latest", memory=parse_size("1g"),
                    cpu=2.0, storage=parse_size("1g")),
})


def defaults_loader(runtime):
    """
    A ``load(path, environ)`` for ConfigReloader when there is no file:
    the built-in defaults with a profile for each image present (``default``
    always, so a daemon whose images are missing still says why on create).
    """

    async def load(path, environ=os.environ):
        config = load_config(None, environ)
        wanted = {profile.image for profile in BUILTIN_PROFILES.values()}
        present = await runtime.images_present(wanted)
        profiles = {name: profile for name, profile in BUILTIN_PROFILES.items()
                    if name == "default" or profile.image in present}
        return attrs.evolve(config, profiles=profiles)

    return load
