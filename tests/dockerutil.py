"""
Helpers for integration tests that drive the real Docker engine.

Without an engine, or without an image a test needs, the test is skipped on
a developer's machine but fails under CI (C{CI=true}, C{1} or C{yes}),
where both must exist.
These helpers block briefly (one local request); call them from setUp.
"""

import io
import os

from twisted.trial.unittest import FailTest, SkipTest

_client = None


def on_ci():
    """
    Whether the environment says this is CI: ``CI`` set to true, 1 or yes
    (any case), as CI services set it.
    """
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason):
    """
    Skip the test for want of ``reason``'s part (an engine, an image, root, a
    toolchain...), or fail it when the environment says this is CI, where
    scripts/setup.sh installs everything and nothing may be skipped.
    """
    if on_ci():
        raise FailTest(f"{reason} (under CI, tests may not be skipped)")
    raise SkipTest(reason)


def require_docker():
    """
    Return a docker SDK client whose engine answers a ping; otherwise skip
    the test (or fail it under CI=true).
    """
    global _client
    if _client is None:
        try:
            import docker

            client = docker.from_env(timeout=10)
            client.ping()
        except Exception as e:
            missing(f"no Docker engine answers: {e}")
        _client = client
    return _client


def image_exists(name):
    """
    Whether the local engine has the image C{name} (never pulls).
    """
    import docker.errors

    try:
        require_docker().images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_image(*names):
    """
    Return the first of C{names} that exists locally; otherwise skip the
    test (or fail it under CI=true).
    """
    for name in names:
        if image_exists(name):
            return name
    missing(f"none of the images {', '.join(names)} exists: build them with make images")


def build_image(tag, dockerfile):
    """
    Build C{dockerfile} (text, no context directory) as C{tag} from local
    images only, and return C{tag}.
    """
    require_docker().images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False
    )
    return tag
