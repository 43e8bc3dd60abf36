"""Where `$import` may fetch NDJSON from: the workers download every manifest URL, so an unchecked URL lets any
client with `system/*.write` make them read internal services (cloud metadata at 169.254.169.254, the HAPI
upstream, admin pages on the private network) and import or report what comes back.

GATEWAY_BULK_IMPORT_HOSTS (comma-separated host names or addresses): when set, only these hosts. Unset: hosts
whose every address is public, plus loopback while the gateway itself listens on loopback and names no other
base URL (development and the test suite); private, link-local, reserved and multicast addresses are refused. A host is resolved at kick-off;
a name that resolves differently when the worker fetches it (DNS rebinding) is not caught here: list the hosts.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from flask import current_app

from mappings.errors import Issue

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Each distinct host costs a DNS lookup at kick-off (seconds when it times out): an export manifest names one or
# two servers, so more than this many is refused before any lookup.
MAX_HOSTS = 10


def _allowed_hosts() -> set[str] | None:
    raw = current_app.config.get("BULK_IMPORT_HOSTS") or os.environ.get("GATEWAY_BULK_IMPORT_HOSTS") or ""
    hosts = {h.strip().lower() for h in raw.split(",") if h.strip()}
    return hosts or None


def _development_host() -> bool:
    """The gateway listens on loopback and announces no other base URL: a development machine, where the NDJSON
    files are served locally too. (Under gunicorn set GATEWAY_HOST or GATEWAY_BASE_URL, as for links.)"""
    base = current_app.config.get("BASE_URL")
    base_host = (urlsplit(base).hostname or "") if base else "localhost"
    return str(current_app.config.get("GATEWAY_HOST", "")) in LOOPBACK_HOSTS and base_host in LOOPBACK_HOSTS


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _refusal(host: str) -> str | None:
    """Why the host may not be fetched from, or None."""
    allowed = _allowed_hosts()
    if allowed is not None:
        return None if host in allowed else "is not one of GATEWAY_BULK_IMPORT_HOSTS"
    addresses = _addresses(host)
    if not addresses:
        return "does not resolve"
    gateway_on_loopback = _development_host()
    for address in addresses:
        if address.is_loopback and gateway_on_loopback:
            continue
        if not address.is_global or address.is_multicast:
            return f"resolves to a non-public address ({address}); list it in GATEWAY_BULK_IMPORT_HOSTS to allow it"
    return None


def refused_urls(urls: list[str]) -> tuple[int, list[Issue]]:
    """(status, issues): 400 for more than MAX_HOSTS hosts, else 403 with one issue per URL whose host may not be
    fetched from (each host resolved once); no issues when every URL may be fetched."""
    hosts = {(urlsplit(url).hostname or "").lower() for url in urls}
    if len(hosts) > MAX_HOSTS:
        return 400, [Issue("input", f"the manifest names {len(hosts)} hosts; at most {MAX_HOSTS} per import", "too-costly")]
    verdicts: dict[str, str | None] = {}
    issues = []
    for n, url in enumerate(urls):
        host = (urlsplit(url).hostname or "").lower()
        if host not in verdicts:
            verdicts[host] = _refusal(host) if host else "has no host"
        if verdicts[host]:
            issues.append(Issue(f"input[{n}].url", f"{url!r}: the host {host!r} {verdicts[host]}", "forbidden"))
    return 403, issues
