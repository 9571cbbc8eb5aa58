"""The destination rules of the http action, as pure logic: which addresses and hosts pass."""

import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows import netguard
from workflows.netguard import HostEntry, Policy, address_refusal, display_url, parse_host_entry

DEFAULT = Policy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "2001::1",
    ],
)
def test_non_public_addresses_are_refused_by_default(address):
    assert address_refusal(ipaddress.ip_address(address), DEFAULT) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass_by_default(address):
    assert address_refusal(ipaddress.ip_address(address), DEFAULT) is None


def test_allowed_networks_admit_and_denied_networks_win():
    policy = Policy(
        allowed_networks=netguard.parse_networks(["10.0.5.0/24", "127.0.0.1"], "A"),
        denied_networks=netguard.parse_networks(["10.0.5.7/32", "93.184.215.0/24"], "D"),
    )
    assert address_refusal(ipaddress.ip_address("10.0.5.1"), policy) is None
    assert address_refusal(ipaddress.ip_address("::ffff:10.0.5.1"), policy) is None
    assert address_refusal(ipaddress.ip_address("10.0.6.1"), policy) is not None
    assert "DENIED" in address_refusal(ipaddress.ip_address("10.0.5.7"), policy)
    assert "DENIED" in address_refusal(ipaddress.ip_address("93.184.215.14"), policy)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("api.example.com", HostEntry(name="api.example.com")),
        ("*.Example.com.", HostEntry(name="*.example.com")),
        ("api.example.com:8443", HostEntry(name="api.example.com", port=8443)),
        ("10.0.5.0/24", HostEntry(network=ipaddress.ip_network("10.0.5.0/24"))),
        ("127.0.0.1:8080", HostEntry(network=ipaddress.ip_network("127.0.0.1/32"), port=8080)),
        ("[::1]:8080", HostEntry(network=ipaddress.ip_network("::1/128"), port=8080)),
        ("2001:db8::/32", HostEntry(network=ipaddress.ip_network("2001:db8::/32"))),
    ],
)
def test_allowed_host_entries_parse(entry, expected):
    assert parse_host_entry(entry, setting="S") == expected


@pytest.mark.parametrize("entry", ["api.example.com:https", "bad host", "*", "a..b", "http://x"])
def test_bad_allowed_host_entries_name_the_setting(entry):
    with pytest.raises(ImproperlyConfigured, match="S: "):
        parse_host_entry(entry, setting="S")


def test_a_wildcard_admits_subdomains_only_and_a_port_only_that_port():
    wildcard = parse_host_entry("*.example.com", setting="S")
    assert wildcard.admits_name("api.example.com", 443) and wildcard.admits_name("a.b.example.com", 80)
    assert not wildcard.admits_name("example.com", 443) and not wildcard.admits_name("badexample.com", 443)
    exact = parse_host_entry("api.example.com:8443", setting="S")
    assert exact.admits_name("api.example.com", 8443) and not exact.admits_name("api.example.com", 443)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1/items?api_key=s3cret#top", "https://api.example.com/v1/items"),
        ("http://user:s3cret@10.0.0.1:8080/x?y=1", "http://10.0.0.1:8080/x"),
        ("http://[::1]:80/", "http://[::1]:80/"),
    ],
)
def test_urls_in_messages_lose_credentials_query_and_fragment(url, shown):
    assert display_url(url) == shown
