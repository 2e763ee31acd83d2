"""The one http(s) test every module uses, and which hosts only this machine can reach."""

from __future__ import annotations

import pytest

from spark_nb._urls import (
    MAX_URL_CHARS,
    canonical_url,
    in_clear_beyond_this_machine,
    is_http_url,
    is_loopback_url,
    url_scheme,
)


@pytest.mark.parametrize("url", [
    "https://example.com/a.jpg", "HTTPS://example.com/a.jpg", "Http://127.0.0.1:8765/files/x.wav",
    "https://[::1]:8080/v.mp4", "http://user:pw@host.example/x", "https://xn--bcher-kva.example/a",
    "http://a_b.example.com/x", "http://example.com./a",
])
def test_fetchable_urls(url: str) -> None:
    """http(s) in any case, IPv4/IPv6 literals, credentials, punycode and trailing dots are URLs."""
    assert is_http_url(url)


@pytest.mark.parametrize("url", [
    "http://", "http:/example.com/a", "https:example.com", "http://exa mple.com/a", "http://example.com/a b",
    "http://ｅxample.com/a", "https://bücher.example/a", "http://example.com:99999/", "http://example.com:x/",
    "http://[::1/", "ftp://example.com/a", "file:///etc/passwd", "example.com/a.jpg", "http://example.com/\x00",
    "http://" + "a" * MAX_URL_CHARS, "", None, 42, b"https://example.com/a",
])
def test_not_fetchable(url: object) -> None:
    """No host, spaces, a full-width or non-ASCII host, a bad port, another scheme, or not a str: not a URL."""
    assert not is_http_url(url)


@pytest.mark.parametrize("text,scheme", [
    ("HTTPS://x", "https"), ("ftp://x", "ftp"), ("C:\\face.jpg", None), ("face.jpg", None), ("./a:b", None),
    ("s3://bucket/key", "s3"),
])
def test_url_scheme_tells_urls_from_paths(text: str, scheme: str | None) -> None:
    """A scheme of two letters or more starts a URL (lower-cased); a drive letter or a path has none."""
    assert url_scheme(text) == scheme


@pytest.mark.parametrize("url,loopback", [
    ("http://127.0.0.1:8765/x", True), ("http://127.8.9.10/x", True), ("http://[::1]/x", True),
    ("http://localhost/x", True), ("http://app.localhost/x", True), ("http://0.0.0.0/x", True),
    ("https://example.com/x", False), ("http://10.0.0.5/x", False),
])
def test_loopback_hosts(url: str, loopback: bool) -> None:
    """A browser elsewhere cannot reach this machine's loopback addresses."""
    assert is_loopback_url(url) is loopback


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("HTTPS://CLOUD.Vtrix.ai", "https://cloud.vtrix.ai"), ("https://cloud.vtrix.ai:443/", "https://cloud.vtrix.ai"),
    ("https://cloud.vtrix.ai./.", "https://cloud.vtrix.ai"), ("http://127.0.0.1:80/a/../", "http://127.0.0.1"),
    ("Http://127.0.0.1:8765//./", "http://127.0.0.1:8765"), ("http://[::1]:8080/api/./v1/", "http://[::1]:8080/api/v1"),
    ("https://gw.example:8443/x/y/..", "https://gw.example:8443/x"), ("http://u:P@H:80", "http://h"),
    ("http://127.1:9", "http://127.1:9"), ("http://localhost:9", "http://localhost:9"),  # names are not resolved
    ("not a url/", "not a url"),
])
def test_a_base_url_has_one_spelling(spelling: str, canonical: str) -> None:
    """Scheme and host in lower case, no default port, no trailing dot, no dot segments, no trailing slash, no
    user:password (never sent): the service identity of the journal and the budget; the canonical form is its own
    canonical form."""
    assert canonical_url(spelling) == canonical
    assert canonical_url(canonical) == canonical


@pytest.mark.parametrize("url,in_clear", [
    ("http://127.0.0.1:8765/x", False), ("http://127.8.9.10/x", False), ("http://[::1]:9/x", False),
    ("http://localhost/x", False), ("HTTP://LOCALHOST./x", False), ("https://gateway.example/x", False),
    ("https://app.localhost/x", False), ("http://gateway.example/x", True), ("http://10.0.0.5/x", True),
    ("http://app.localhost/x", True), ("http://localhost.gateway.example/x", True), ("http://0.0.0.0/x", True),
])
def test_in_clear_beyond_this_machine_trusts_only_literal_loopback_names(url: str, in_clear: bool) -> None:
    """http:// stays on this machine only for localhost, 127.0.0.0/8 and ::1, which no client of spark-nb sends
    through a proxy; a *.localhost name is asked of DNS (which may answer any address), so it is in clear."""
    assert in_clear_beyond_this_machine(url) is in_clear
