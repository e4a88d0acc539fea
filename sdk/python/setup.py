"""
The Python SDK as a distribution of its own (``sandboxd-sdk``): the package
``sandbox`` and the wire codec ``agent.wire`` from this source tree (with the
end-to-end encryption modules ``agent.e2e*`` the SDK shares with the agent),
nothing else of the daemon or the agent, and ``websockets`` as its only
dependency; ``sandboxd-sdk[encryption]`` adds ``cryptography`` for encrypted
sessions.

    pip install ./sdk/python          (or: python -m build sdk/python)
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.relpath(os.path.join(HERE, "..", ".."), HERE)

#: The modules of the agent package the SDK imports: the codec, and the
#: sealing of encrypted sessions (docs/security.md).
AGENT_MODULES = ("__init__", "wire", "e2e_codes", "e2e", "e2e_frames")


class SDKOnly(build_py):
    """
    Build ``agent`` with its wire codec and the sealing modules alone.
    """

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "agent":
            modules = [m for m in modules if m[1] in AGENT_MODULES]
        return modules


def version():
    with open(os.path.join(HERE, ROOT, "sandbox", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split('"')[1]
    raise RuntimeError("no __version__ in sandbox/__init__.py")


setup(
    name="sandboxd-sdk",
    version=version(),
    description="Python SDK of sandboxd: sandboxes, files, processes, ptys, env and tunnels over one WebSocket",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=["sandbox", "agent"],
    package_dir={"sandbox": os.path.join(ROOT, "sandbox"), "agent": os.path.join(ROOT, "agent")},
    install_requires=["websockets>=13.0"],
    extras_require={"encryption": ["cryptography>=38"]},
    cmdclass={"build_py": SDKOnly},
)
