"""
env.get, env.set, env.delete and env.list: the sandbox environment that
every later process.exec, process.stream and process.spawn starts with
(before the request's own ``env``).  It belongs to the agent, so every
connection and every client session of the sandbox sees the same one.
"""

from . import params as p
from .errors import bad_param

GET_SPEC = {"name": (p.string, p.REQUIRED)}
SET_SPEC = {"vars": (p.string_map, p.REQUIRED)}
DELETE_SPEC = {"names": (p.string_list, p.REQUIRED)}
LIST_SPEC = {}


def _check_name(param, name):
    if not name or "=" in name:
        raise bad_param(param, f"invalid name {name!r}")
    return name


def get(agent, args):
    name = _check_name("name", args["name"])
    return {"name": name, "value": agent.env.get(name)}


def set_(agent, args):
    agent.env.update(args["vars"])
    return {}


def delete(agent, args):
    names = [_check_name("names", name) for name in args["names"]]
    deleted = [name for name in names if agent.env.pop(name, None) is not None]
    return {"deleted": deleted}


def list_(agent, args):
    return {"env": dict(agent.env)}
