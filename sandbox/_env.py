"""
``sbx.env``: the sandbox's environment (``env.*`` of docs/protocol.md).
Variables set here apply to every later exec, stream, spawn and pty of the
sandbox, from any session; a call's own ``env=`` still wins.
"""


class Environment:
    """
    The environment variables of a sandbox.
    """

    def __init__(self, session):
        self._session = session

    async def get(self, name, default=None):
        """
        The value of ``name``, or ``default`` when it is not set.
        """
        value = (await self._session.call("env.get", {"name": str(name)}))["value"]
        return default if value is None else value

    async def set(self, variables=None, **more):
        """
        Set variables from a dict and/or keywords: ``set({"A": "1"}, B="2")``.
        """
        values = dict(variables or {}, **more)
        await self._session.call(
            "env.set", {"vars": {str(k): str(v) for k, v in values.items()}}
        )

    async def delete(self, *names):
        """
        Unset ``names``; return those that were set.
        """
        result = await self._session.call("env.delete", {"names": [str(n) for n in names]})
        return result["deleted"]

    async def list(self):
        """
        The whole environment as a dict.
        """
        return (await self._session.call("env.list"))["env"]
