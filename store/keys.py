"""Every Redis key the store uses, in one place (see docs/store.md for the data model)."""
from __future__ import annotations

CHANGED = "store:patients-changed"  # zset: patient id -> ms of its last write


def resource(rtype: str, rid: str) -> str:
    return f"res:{rtype}:{rid}"


def history(rtype: str, rid: str) -> str:
    return f"hist:{rtype}:{rid}"  # list of every version's JSON, oldest first


def identifier(rtype: str, token: str) -> str:
    return f"ident:{rtype}:{token}"  # -> logical id


def owner(rtype: str, rid: str) -> str:
    return f"owner:{rtype}:{rid}"  # -> patient id of the compartment holding it


def members(pid: str) -> str:
    return f"pat:{pid}:members"  # zset: "Type/id" -> ms of last write


def patient_version(pid: str) -> str:
    return f"pat:{pid}:version"  # counter bumped by every write in the compartment


def type_index(rtype: str) -> str:
    return f"type:{rtype}"  # zset: id -> ms of last write


def cache(pid: str, version: int, variant: str) -> str:
    return f"cache:{pid}:{version}:{variant}"
