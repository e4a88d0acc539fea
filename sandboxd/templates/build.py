"""
Templates built from a Dockerfile (``sbx build``, ``POST /templates/build``).

Three engine builds, all local (nothing is pulled: ``FROM`` one of our
images or any image the engine has):

1. the caller's context and Dockerfile, as given;
2. the agent stage, ``sandboxd-template-base:<id>``: checks the result has
   ``python3``, adds our agent when the image lacks it (no
   ``sandboxd.agent.protocol`` label), and checks that the agent starts
   (``python3 -I -m agent`` gets as far as asking for its secret); sandboxes
   boot from this image's layers, and later saves of them bake on it;
3. the seed stage, ``sandboxd-template:<id>``: what the Dockerfile put in
   /root, copied to the seed, since at run time /root is a fresh tmpfs
   filled from the seed (sandboxd/templates/bake.py).

A failure at any step names it and removes what was built.
"""

import io
import os
import re
import tarfile

import agent as agent_package
from twisted.logger import Logger

from sandboxd.protocols.httprelay import BytesProducer
from sandboxd.runtimes._engine import EngineError, path_part
from sandboxd.templates.bake import REPOSITORY, SEED_DIR, BakeFailed

#: Repository of the agent stage (the base later saves bake on).
BASE_REPOSITORY = "sandboxd-template-base"
#: Repository of the caller's own build, removed once the template is made.
BUILD_REPOSITORY = "sandboxd-build"
#: The label our sandbox images carry when the agent is in them.
AGENT_LABEL = "sandboxd.agent.protocol"
NO_PYTHON = ("the image has no python3: the sandbox agent needs Python 3.11 or later "
             "(build FROM one of the sandbox images, or install python3)")
AGENT_CHECK = "SANDBOXD_AGENT_CHECK"

_AGENT_STAGE = """\
FROM {image}
RUN command -v python3 >/dev/null || {{ echo "{no_python}" >&2; exit 1; }}
{add_agent}
RUN python3 -I -m agent 2>&1 | grep -q SANDBOX_AGENT_SECRET \\
    || {{ echo "{check}: the sandbox agent does not start in this image:" >&2; \\
          python3 -I -m agent >&2; exit 1; }}
WORKDIR /root
ENTRYPOINT ["python3", "-I", "-m", "agent"]
CMD []
"""

_ADD_AGENT = """\
COPY agent/ /.sandboxd/agent/
RUN site=$(python3 -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \\
    && mkdir -p "$site" && rm -rf "$site/agent" && cp -r /.sandboxd/agent "$site/agent" \\
    && chmod -R u=rwX,go=rX "$site/agent"
LABEL {label}=added
"""

_SEED_STAGE = """\
FROM {image}
RUN mkdir -p {seed} && if [ -d /root ]; then cp -a /root {seed}/root; \\
    else mkdir -m 0700 {seed}/root; fi
LABEL sandboxd.template={template}
"""


#: Terminal colour codes the engine puts around a step's stderr.
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


class BuildFailed(BakeFailed):
    """
    The Dockerfile did not build, or its image cannot run the agent.
    """


def _context(files):
    """
    A tar (bytes) of {name: bytes}; directories come from the names.
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _agent_files():
    """
    The agent package's source files, as context members under agent/.
    """
    root = os.path.dirname(agent_package.__file__)
    files = {}
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), "rb") as f:
                files[f"agent/{name}"] = f.read()
    return files


class Builder:
    """
    Builds template images through the engine client ``engine()``; every
    progress line goes to ``progress(text)``.
    """

    log = Logger()

    def __init__(self, engine):
        self._engine = engine

    async def build(self, template_id, context, dockerfile, progress):
        """
        Build ``context`` (an IBodyProducer of a tar) with ``dockerfile``
        (its path in the context) into the template ``template_id``'s
        images; fire with (image, base image, size in bytes).
        """
        engine = self._engine()
        user = f"{BUILD_REPOSITORY}:{template_id}"
        base = f"{BASE_REPOSITORY}:{template_id}"
        image = f"{REPOSITORY}:{template_id}"
        made = []
        try:
            progress(f"building {dockerfile}")
            await self._build(engine, context, user, progress, {"dockerfile": dockerfile})
            made.append(user)
            inspected = await engine.call("GET", f"/images/{path_part(user)}/json")
            labels = (inspected.get("Config") or {}).get("Labels") or {}
            has_agent = bool(labels.get(AGENT_LABEL))
            progress("checking python3 and the sandbox agent"
                     + ("" if has_agent else " (adding the agent: the image lacks it)"))
            files = {"Dockerfile": _AGENT_STAGE.format(
                image=user, no_python=NO_PYTHON, check=AGENT_CHECK,
                add_agent="" if has_agent else _ADD_AGENT.format(label=AGENT_LABEL),
            ).encode()}
            if not has_agent:
                files.update(_agent_files())
            await self._build(engine, BytesProducer(_context(files)), base, progress)
            made.append(base)
            progress("copying /root to the template's seed")
            seed = _SEED_STAGE.format(image=base, seed=SEED_DIR, template=template_id)
            await self._build(engine, BytesProducer(_context({"Dockerfile": seed.encode()})),
                              image, progress)
            made.append(image)
            size = (await engine.call("GET", f"/images/{path_part(image)}/json")).get("Size", 0)
        except BaseException:
            for name in reversed(made):
                await self.remove_quietly(name)
            raise
        await self.remove_quietly(user)
        return image, base, size

    async def _build(self, engine, producer, tag, progress, params=None):
        errors = []
        said = []

        def line(message):
            if "error" in message:
                errors.append(str(message.get("error")).strip())
            text = message.get("stream")
            if isinstance(text, str) and text.strip():
                text = _ESCAPES.sub("", text).rstrip("\n")
                progress(text)
                # Our checks' own output (not the step that echoes it).
                if (NO_PYTHON in text or AGENT_CHECK in text) and not text.startswith("Step "):
                    said.append(text.strip().replace(f"{AGENT_CHECK}: ", ""))

        query = {"t": tag, "rm": "1", "forcerm": "1", "pull": "0", **(params or {})}
        try:
            await engine.upload("POST", "/build", query, producer, "application/x-tar",
                                line_received=line)
        except EngineError as e:
            raise BuildFailed(f"the build failed: {e.message}") from e
        if errors:
            # Our own checks' words say more than the engine's exit code.
            raise BuildFailed(f"the build failed: {said[0] if said else errors[-1]}")

    async def remove_quietly(self, name):
        try:
            await self._engine().call("DELETE", f"/images/{path_part(name)}")
        except Exception as e:
            self.log.warn("cannot remove image {image}: {error}", image=name, error=e)
