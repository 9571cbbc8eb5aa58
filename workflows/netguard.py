"""Where the http action may connect: resolve a host once, check every address, hand back only checked ones."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from workflows.exceptions import DestinationNotAllowedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every address that is not on the public internet (IANA special-purpose registries). Refused unless
# CHORDFLOW_HTTP_ALLOWED_NETWORKS names it: a workflow author must not reach the host, its neighbours
# or the cloud's metadata service through a server of ours.
NON_PUBLIC_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches local listeners
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, with the metadata service at 169.254.169.254
        "172.16.0.0/12",  # private (RFC 1918)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private (RFC 1918)
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, with broadcast 255.255.255.255
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local (private)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class HostEntry:
    """One CHORDFLOW_HTTP_ALLOWED_HOSTS entry: a name, `*.suffix`, or a network; `port` None for any port."""

    name: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def admits_name(self, host: str, port: int) -> bool:
        if self.name is None or self.port not in (None, port):
            return False
        if self.name.startswith("*."):
            return host.endswith(self.name[1:])
        return host == self.name

    def admits_address(self, address: IPAddress, port: int) -> bool:
        return self.network is not None and self.port in (None, port) and _within(address, (self.network,))


@dataclass(frozen=True)
class Policy:
    """The destination rules in force. A denied network wins over an allowed one."""

    allowed_hosts: tuple[HostEntry, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    denied_networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Target:
    """A host and port that passed the policy, with the socket addresses it resolved to (all checked)."""

    host: str
    port: int
    addresses: tuple[tuple, ...]


def policy_from_settings() -> Policy:
    """Read per call, so that a settings change (and a test's override) takes effect at once."""
    return Policy(
        allowed_hosts=tuple(
            parse_host_entry(entry, setting="CHORDFLOW_HTTP_ALLOWED_HOSTS")
            for entry in settings.CHORDFLOW_HTTP_ALLOWED_HOSTS
        ),
        allowed_networks=parse_networks(settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS, "CHORDFLOW_HTTP_ALLOWED_NETWORKS"),
        denied_networks=parse_networks(settings.CHORDFLOW_HTTP_DENIED_NETWORKS, "CHORDFLOW_HTTP_DENIED_NETWORKS"),
    )


def parse_networks(entries: list[str], setting: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting}: {exc} (use addresses or CIDRs, like 10.0.5.0/24)") from None


def parse_host_entry(entry: str, *, setting: str) -> HostEntry:
    """`api.example.com`, `*.example.com`, `10.0.5.0/24`, `127.0.0.1:8080`, `[::1]:8080`."""
    raw, port = entry.strip(), None
    if raw.startswith("["):
        raw, _, rest = raw[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif raw.count(":") == 1:
        raw, port = raw.split(":")
    try:
        port_number = int(port) if port is not None else None
    except ValueError:
        raise ImproperlyConfigured(f"{setting}: {entry!r} has a port that is not a number") from None
    try:
        return HostEntry(network=ipaddress.ip_network(raw, strict=False), port=port_number)
    except ValueError:
        pass
    name = raw.lower().rstrip(".")
    labels = name.removeprefix("*.").split(".")
    if not all(label and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise ImproperlyConfigured(
            f"{setting}: {entry!r} is not a host name, *.wildcard, address or CIDR (optionally with :port)"
        )
    return HostEntry(name=name, port=port_number)


def display_url(url: str) -> str:
    """The URL as error messages show it: no credentials, query string or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparsable URL>"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address; any other as it is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64_NETWORK:
            return ipaddress.IPv4Address(address.packed[-4:])
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _within(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(candidate in network for candidate in {address, unwrap(address)} for network in networks)


def address_refusal(address: IPAddress, policy: Policy) -> str | None:
    """Why no connection may go to `address` whatever the host name, or None when one may."""
    if _within(address, policy.denied_networks):
        return "is in CHORDFLOW_HTTP_DENIED_NETWORKS"
    if _within(address, NON_PUBLIC_NETWORKS) and not _within(address, policy.allowed_networks):
        return "is not a public address (CHORDFLOW_HTTP_ALLOWED_NETWORKS can admit it)"
    return None


def resolve(url: str, host: str, port: int, policy: Policy) -> Target:
    """Resolve `host` once and check every address it resolves to; refuse the URL if any fails.

    The caller connects to `Target.addresses` only, never to the name again: a second lookup could
    answer differently (DNS rebinding). `url` is only for the error message.
    """
    name_admitted = not policy.allowed_hosts or any(entry.admits_name(host, port) for entry in policy.allowed_hosts)
    if not name_admitted and not any(entry.network is not None for entry in policy.allowed_hosts):
        raise DestinationNotAllowedError(
            f"{display_url(url)} is not allowed: {host}:{port} is not in CHORDFLOW_HTTP_ALLOWED_HOSTS"
        )
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
        reason = address_refusal(address, policy)
        if reason is None and not name_admitted:
            if not any(entry.admits_address(address, port) for entry in policy.allowed_hosts):
                reason = f"is not in CHORDFLOW_HTTP_ALLOWED_HOSTS (port {port})"
        if reason is not None:
            subject = host if host == str(address) else f"{host} resolves to {address}, which"
            raise DestinationNotAllowedError(f"{display_url(url)} is not allowed: {subject} {reason}")
    return Target(host=host, port=port, addresses=tuple((family, sockaddr) for family, *_, sockaddr in infos))
