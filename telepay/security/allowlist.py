"""Source-address allowlists for protected routes.

Owns the membership test and NOWPayments' published IPN source addresses. An allowlist is a
second lock, not the main one: signatures are what prove a sender, the allowlist only narrows
who may try. The address checked should come from ``client_ip``, never straight from a header.
"""

import functools
import ipaddress
from collections.abc import Iterable

from telepay.security.client_ip import IPAddress, IPNetwork, normalize_network, parse_ip

# NOWPayments' published IPN source addresses. If they add one, IPNs from it are refused (and
# retried by them) until this changes, which is why callers pass networks in rather than the
# allowlist hard-wiring this tuple.
NOWPAYMENTS_IPN_IPS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(address)
    for address in ("51.89.194.21", "51.75.77.69", "138.201.172.58", "65.21.158.36")
)


class IpAllowlist:
    """A set of networks; an empty set allows everyone (the allowlist is switched off)."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(normalize_network(n) for n in networks)
        # Each IPN asks twice (rate limit, allowlist), always about the same few addresses.
        self.allows = functools.lru_cache(maxsize=4096)(self._allows)

    @property
    def allows_all(self) -> bool:
        return not self.networks

    def _allows(self, ip: str | IPAddress) -> bool:
        """Whether ``ip`` is in one of the networks (always true for an empty allowlist).

        IPv4-mapped IPv6 (``::ffff:51.89.194.21``) counts as the IPv4 address. Something that
        is not an address is refused, unless the allowlist is off.
        """
        if self.allows_all:
            return True
        address = parse_ip(str(ip))
        if address is None:
            return False
        # Membership across IP versions is simply False, never an error.
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"IpAllowlist({[str(n) for n in self.networks]})"
