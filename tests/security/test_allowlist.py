"""Source-address allowlists."""

import ipaddress

import pytest

from telepay.security.allowlist import NOWPAYMENTS_IPN_IPS, IpAllowlist
from telepay.security.client_ip import parse_networks


def test_nowpayments_addresses():
    assert {str(n.network_address) for n in NOWPAYMENTS_IPN_IPS} == {
        "51.89.194.21",
        "51.75.77.69",
        "138.201.172.58",
        "65.21.158.36",
    }
    assert all(n.num_addresses == 1 for n in NOWPAYMENTS_IPN_IPS)


NOWPAYMENTS = IpAllowlist(NOWPAYMENTS_IPN_IPS)
MIXED = IpAllowlist(parse_networks("10.0.0.0/8, 192.0.2.1, 2001:db8::/32"))


@pytest.mark.parametrize(
    ("allowlist", "ip", "allowed"),
    [
        (NOWPAYMENTS, "51.89.194.21", True),
        (NOWPAYMENTS, "65.21.158.36", True),
        (NOWPAYMENTS, "::ffff:51.75.77.69", True),
        (NOWPAYMENTS, ipaddress.ip_address("138.201.172.58"), True),
        (NOWPAYMENTS, "51.89.194.22", False),
        (NOWPAYMENTS, "127.0.0.1", False),
        (NOWPAYMENTS, "::1", False),
        (NOWPAYMENTS, "::51.89.194.21", False),  # IPv4-compatible, not mapped: a different thing
        (MIXED, "10.255.255.255", True),
        (MIXED, "11.0.0.0", False),
        (MIXED, "192.0.2.1", True),
        (MIXED, "192.0.2.2", False),
        (MIXED, "2001:db8:1::5", True),
        (MIXED, "2001:DB8::5", True),
        (MIXED, "2001:db9::5", False),
        (MIXED, "::ffff:10.1.2.3", True),
        (MIXED, "fe80::1%eth0", False),
    ],
)
def test_allows(allowlist, ip, allowed):
    assert allowlist.allows(ip) is allowed


@pytest.mark.parametrize(
    "ip", ["", "garbage", "51.89.194.21:443", "51.89.194.21/32", " ", "51.89.194", None]
)
def test_garbage_is_refused(ip):
    assert NOWPAYMENTS.allows(ip) is False


@pytest.mark.parametrize("ip", ["1.2.3.4", "::1", "garbage", ""])
def test_empty_allowlist_allows_all(ip):
    allowlist = IpAllowlist([])
    assert allowlist.allows_all
    assert allowlist.allows(ip)


def test_mapped_networks_are_folded():
    allowlist = IpAllowlist([ipaddress.ip_network("::ffff:10.0.0.0/104")])
    assert allowlist.allows("10.2.3.4")
    assert allowlist.allows("::ffff:10.2.3.4")
    assert not allowlist.allows("11.2.3.4")


def test_repr_lists_networks():
    assert "51.89.194.21/32" in repr(NOWPAYMENTS)
