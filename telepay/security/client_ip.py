"""Which address a request really came from, and the CIDR lists that decide it.

Owns the rule from the security model: the socket peer, unless the peer is one of our trusted
proxies (Caddy on loopback); then the right-most ``X-Forwarded-For`` address that is not itself
a trusted proxy. Each proxy appends the address it received the request from, so entries are
only as trustworthy as the hop that wrote them: walking from the right, every entry up to and
including the first untrusted one was written by a proxy we trust. Everything further left was
supplied by the client and is never used (the left-most entry is the one attackers forge).

Garbage (an entry that is not a bare IP address, including ``host:port`` forms and empty
entries) stops the walk, and the answer is the last address we could vouch for: the trusted
hop that handed us the garbage, or the peer itself. That never trusts anything a client wrote,
at the price of grouping such requests under the proxy's address. Because the answer can then
be a trusted proxy's own address, trusted proxy networks must not also be allowlisted.
"""

import ipaddress
import re
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_ip(text: str) -> IPAddress | None:
    """Return the address in ``text`` in one canonical form; ``None`` if it is not an address.

    Dual-stack sockets report IPv4 clients as ``::ffff:a.b.c.d``; folding those to IPv4 lets
    one client have one spelling in rate-limit keys, allowlists and logs.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            # "fe80::1%eth0" is the same host as "fe80::1" to us, and the zone would make the
            # two compare unequal.
            return ipaddress.IPv6Address(address.packed)
    return address


def normalize_network(network: IPNetwork) -> IPNetwork:
    """Fold an IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) into its IPv4 network."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        prefix = network.prefixlen - 96
        return ipaddress.IPv4Network((network.network_address.ipv4_mapped, prefix))
    return network


def parse_networks(text: str) -> list[IPNetwork]:
    """Parse a settings value like ``"10.0.0.0/8, 127.0.0.1, ::1"`` into networks.

    Entries are separated by commas and/or whitespace; a bare address is a single-address
    network. An entry with host bits set (``10.0.0.1/8``) is refused rather than guessed at:
    it is usually a typo, and either reading could open or close the wrong range.
    """
    networks = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR network: {entry!r} ({exc})") from None
        networks.append(normalize_network(network))
    return networks


def _is_trusted(address: IPAddress, trusted: list[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_ip(peer: str, forwarded_for: str | None, trusted_proxies: Iterable[IPNetwork]) -> str:
    """Return the client's address for rate limiting, allowlisting and logs.

    ``forwarded_for`` is the ``X-Forwarded-For`` value, several headers joined with commas.
    The result is a canonical address string; an unparsable peer is returned unchanged (it is
    then in no network, so it is neither trusted nor allowlisted).
    """
    trusted = [normalize_network(network) for network in trusted_proxies]
    current = parse_ip(peer)
    if current is None:
        return peer
    if not trusted or not _is_trusted(current, trusted) or not forwarded_for:
        return str(current)
    for entry in reversed(forwarded_for.split(",")):
        hop = parse_ip(entry)
        if hop is None:
            break  # garbage: keep the last address a trusted proxy vouched for
        current = hop
        if not _is_trusted(hop, trusted):
            break
    return str(current)


def rate_limit_key(address: str, ipv6_prefix: int = 64) -> str:
    """The bucket an address spends from: itself for IPv4, its network for IPv6.

    An IPv6 host is usually given a whole /64 and picks addresses in it freely, so keying on
    the full address would hand a client a fresh bucket per request. ``address`` is what
    ``client_ip`` returned (canonical); anything unparsable is its own key.
    """
    parsed = parse_ip(address)
    if not isinstance(parsed, ipaddress.IPv6Address) or ipv6_prefix >= 128:
        return address
    return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
