"""Which `Host` names a gateway answers when authentication is off: the DNS rebinding defence.

A page on a rebinding domain (``rebind.example`` resolving first to the attacker's
server, then to 127.0.0.1) is same-origin with a gateway on loopback as far as the
browser knows: its `Origin` matches the request's own `Host`, so an origin check alone
lets it read every log. Only the `Host` header still names the attacker's domain. So
with authentication off the gateway answers only loopback names (``localhost``, any
127.0.0.0/8 address, ``[::1]``; any port) and the names an operator lists in
`gateway.allowed_hosts` (``name`` for any port, ``name:port`` for that port only).
With authentication on, the Host is not checked: a rebinding page holds no token, and
the token cookie is scoped to the gateway's real name.
"""

from __future__ import annotations

import ipaddress

from settings import ConfigError


def is_loopback(name: str) -> bool:
    """Whether a host name (without port or brackets) is a loopback name or address."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(host: str) -> tuple[str, str]:
    """(name, port) of a `Host` value, in lower case, IPv6 brackets removed; port "" when absent."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    name, colon, port = host.rpartition(":")
    if not colon or ":" in name or not port.isdigit():
        return host, ""  # no port, or an unbracketed IPv6 address
    return name, port


class HostPolicy:
    """The `Host` names served with authentication off: loopback, then `gateway.allowed_hosts`."""

    def __init__(self, allowed: list[str]) -> None:
        self.any_port: set[str] = set()
        self.one_port: set[tuple[str, str]] = set()
        for entry in allowed:
            name, port = split_host(entry)
            if not name or any(c in name for c in "/@?#* "):
                raise ConfigError(f"gateway.allowed_hosts: {entry!r} is not a host name (give 'name' or 'name:port')")
            if port:
                self.one_port.add((name, port))
            else:
                self.any_port.add(name)

    def allows(self, host: str) -> bool:
        name, port = split_host(host)
        return is_loopback(name) or name in self.any_port or (name, port) in self.one_port
