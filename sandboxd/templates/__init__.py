"""
Templates: a sandbox's /root saved as an image layer, and sandboxes made
from it (docs/templates.md).
"""

import os

from sandboxd.templates.bake import Baker
from sandboxd.templates.build import Builder
from sandboxd.templates.catalog import TemplateCatalog
from sandboxd.templates.records import TemplateStore

__all__ = ["Baker", "Builder", "TemplateCatalog", "TemplateStore", "builder_for",
           "catalog_for"]


def builder_for(runtime):
    """
    Builds templates from Dockerfiles through the Docker runtime of
    ``runtime`` (a RuntimeSet).
    """
    return Builder(runtime.serving("docker").engine)


def catalog_for(reactor, config, runtime, manager, events):
    """
    The daemon's template catalog: records in ``server.data_dir``, images
    baked through the Docker runtime of ``runtime`` (a RuntimeSet), events
    into ``events`` (an EventFeed); it observes ``manager``'s lifecycle.
    """
    docker = runtime.serving("docker")
    owner = os.path.abspath(config.server.data_dir)
    catalog = TemplateCatalog(
        reactor, TemplateStore(config.server.data_dir), Baker(docker.engine, owner),
        config.limits, events.record, lambda: manager.list(),
        forget=manager.pools.dropTemplate,
    )
    manager.lifecycle.observe(catalog)
    return catalog
