"""Redaction of a crawl's credentials: what status, the dashboard, logs and exports may show."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.crawl.options import CrawlOptions
from pipeline.download.http_options import redact_options, redact_url
from pipeline.settings import Settings


def test_credentials_are_hidden_and_the_rest_kept() -> None:
    options = CrawlOptions.build(
        "http://example.com/",
        Settings(),
        headers={"Accept-Language": "fr", "Authorization": "Bearer t0ken", "X-Api-Key": "k3y"},
        cookies={"session": "s3cret"},
        auth="alice:pa55word",
        proxies=["http://bob:pr0xy@127.0.0.1:3128", "http://127.0.0.1:3129"],
    )
    shown = redact_options(options.to_dict())
    text = repr(shown)
    for secret in ("t0ken", "k3y", "s3cret", "pa55word", "pr0xy"):
        assert secret not in text
    assert shown["headers"]["Accept-Language"] == "fr"
    assert shown["auth"] == "alice:***"
    assert shown["proxies"] == ["http://bob:***@127.0.0.1:3128", "http://127.0.0.1:3129"]
    assert shown["cookies"] == {"session": "***"}


@given(st.text(alphabet="abcXYZ019-._~", min_size=1, max_size=12))
def test_a_proxy_password_never_survives(password: str) -> None:
    shown = redact_url(f"http://user:pw-{password}@proxy.internal:3128")
    assert f"pw-{password}" not in shown and shown == "http://user:***@proxy.internal:3128"
