"""Client address resolution behind trusted proxies, and parsing of CIDR settings."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telepay.security.client_ip import client_ip, normalize_network, parse_ip, parse_networks, rate_limit_key

LOOPBACK = parse_networks("127.0.0.1, ::1")
PROXIES = parse_networks("127.0.0.0/8, ::1, 10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # Untrusted peer: headers are ignored, whatever they say.
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),
        ("203.0.113.7", None, "203.0.113.7"),
        ("2001:db8::7", "198.51.100.1", "2001:db8::7"),
        # Trusted peer without a header: the peer.
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
        # Trusted peer: right-most entry.
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("::1", "2001:db8::1", "2001:db8::1"),
        # Client-supplied entries on the left are never used.
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6,7.7.7.7,198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "51.89.194.21, 198.51.100.1", "198.51.100.1"),
        # Trusted hops on the right are skipped.
        ("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"),
        ("127.0.0.1", "198.51.100.1, 10.1.2.3, 127.0.0.1", "198.51.100.1"),
        # Every entry trusted: the furthest one, still a trusted hop.
        ("127.0.0.1", "10.0.0.5, 127.0.0.1", "10.0.0.5"),
        # Garbage stops the walk at the last vouched-for address.
        ("127.0.0.1", "198.51.100.1, garbage", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, 10.0.0.5, garbage", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, garbage, 10.0.0.5", "10.0.0.5"),
        ("127.0.0.1", "garbage, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "198.51.100.1:443", "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::1]:443", "127.0.0.1"),
        ("127.0.0.1", "unknown", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1,", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, , 10.0.0.5", "10.0.0.5"),
        ("127.0.0.1", "1.2.3.4 5.6.7.8", "127.0.0.1"),
        ("127.0.0.1", "١.٢.٣.٤", "127.0.0.1"),
        ("127.0.0.1", "1.2.3.4\x00", "127.0.0.1"),
        ("127.0.0.1", "999.1.1.1", "127.0.0.1"),
        ("127.0.0.1", "for=198.51.100.1", "127.0.0.1"),
        # Whitespace around entries is normal (headers joined with ", ").
        ("127.0.0.1", "  198.51.100.1  ", "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1\t", "198.51.100.1"),
        # Canonical spellings out.
        ("127.0.0.1", "::ffff:198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("::ffff:203.0.113.7", "198.51.100.1", "203.0.113.7"),
        ("127.0.0.1", "fe80::1%eth0", "fe80::1"),
    ],
)
def test_client_ip(peer, forwarded_for, expected):
    assert client_ip(peer, forwarded_for, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer():
    assert client_ip("127.0.0.1", "198.51.100.1", []) == "127.0.0.1"


def test_unparsable_peer_is_returned_unchanged_and_not_trusted():
    assert client_ip("unix:/run/telepay.sock", "198.51.100.1", PROXIES) == "unix:/run/telepay.sock"
    assert client_ip("", "198.51.100.1", PROXIES) == ""


def test_mapped_trusted_network_counts_for_ipv4_peer():
    trusted = [ipaddress.ip_network("::ffff:127.0.0.0/104")]
    assert client_ip("127.0.0.1", "198.51.100.1", trusted) == "198.51.100.1"


def test_trusted_proxies_may_be_any_iterable():
    assert client_ip("127.0.0.1", "198.51.100.1", iter(LOOPBACK)) == "198.51.100.1"


addresses = st.ip_addresses().map(str)


@given(st.lists(addresses, max_size=6), addresses)
def test_a_client_cannot_choose_its_address(spoofed, real):
    # Whatever a client prepends, a trusted proxy's append of the real address wins.
    header = ", ".join([*spoofed, real])
    got = client_ip("127.0.0.1", header, LOOPBACK)
    if any(parse_ip(real) in network for network in LOOPBACK):
        return  # the "client" is itself a trusted proxy: covered by the unit cases
    assert got == str(parse_ip(real))


@given(st.text(max_size=60), st.text(max_size=30))
def test_never_raises_and_never_returns_text_that_is_not_the_peer_or_an_address(header, peer):
    got = client_ip(peer, header, PROXIES)
    assert got == peer or parse_ip(got) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8, 127.0.0.1, ::1", ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]),
        ("10.0.0.0/8,127.0.0.1", ["10.0.0.0/8", "127.0.0.1/32"]),
        ("10.0.0.0/8 192.168.0.0/16\n::1", ["10.0.0.0/8", "192.168.0.0/16", "::1/128"]),
        ("10.0.0.0/8,", ["10.0.0.0/8"]),
        ("", []),
        ("   ", []),
        ("2001:db8::/32", ["2001:db8::/32"]),
        ("::ffff:10.0.0.0/104", ["10.0.0.0/8"]),
        ("::ffff:1.2.3.4", ["1.2.3.4/32"]),
        ("0.0.0.0/0", ["0.0.0.0/0"]),
    ],
)
def test_parse_networks(text, expected):
    assert parse_networks(text) == [ipaddress.ip_network(e) for e in expected]


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.1/8", "10.0.0.0/33", "localhost", "10.0.0", "1.2.3.4:80", "::1/129", "10.0.0.0/-1"],
)
def test_parse_networks_names_the_bad_entry(entry):
    with pytest.raises(ValueError, match=repr(entry).replace("[", r"\[")):
        parse_networks(f"127.0.0.1, {entry}, ::1")


def test_normalize_network_leaves_plain_networks_alone():
    net = ipaddress.ip_network("2001:db8::/32")
    assert normalize_network(net) is net
    assert normalize_network(ipaddress.ip_network("::ffff:0:0/96")) == ipaddress.ip_network(
        "0.0.0.0/0"
    )


@pytest.mark.parametrize("address, prefix, key", [
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", 56, "2001:db8:1::/56"),
    ("2001:db8:1:2::1", 128, "2001:db8:1:2::1"),
    ("198.51.100.7", 64, "198.51.100.7"),
    ("not-an-address", 64, "not-an-address"),
])
def test_rate_limit_key_groups_ipv6_by_prefix(address, prefix, key):
    assert rate_limit_key(address, prefix) == key
