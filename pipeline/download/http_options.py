"""What a crawl may add to its requests: headers, cookies, basic auth, a User-Agent, proxies.

The checks here run when a crawl is submitted (they are the settings' `check`s), so a header
with a line break or a proxy that is not an http(s) URL is refused with the option's name
before anything is queued. The redaction here is what keeps credentials out of everything a
crawl shows: status, the dashboard, logs and exports see `redact_options(...)`, never the values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yarl

# RFC 9110 token: the characters a header or cookie name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers whose values are credentials whatever the crawl calls them.
_SECRET_HEADER = re.compile(r"auth|cookie|token|secret|key|session|password|signature", re.IGNORECASE)
# Headers the fetcher owns: a crawl setting them would break decompression, framing or the
# proxy's own credentials.
RESERVED_HEADERS = frozenset(
    {"accept-encoding", "content-length", "host", "transfer-encoding", "connection", "proxy-authorization"}
)
HIDDEN = "***"
# The options this module checks and redacts, in the order they are shown.
HTTP_OPTIONS = ("user_agent", "headers", "cookies", "auth", "proxies")


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a credential (never shown, never sent to another origin)."""
    return _SECRET_HEADER.search(name) is not None


def check_header(item: tuple[str, str]) -> None:
    name, value = item
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"header name {name!r} is not a valid HTTP token")
    if name.lower() == "proxy-authorization":
        raise ValueError("give a proxy's credentials in its URL (http://user:password@proxy:3128), not as a header")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name} is set by the fetcher and cannot be given")
    if name.lower() == "user-agent":
        raise ValueError("set the User-Agent with the user_agent option (--user-agent), not as a header")
    if _CONTROL.search(value):
        raise ValueError(f"header {name}: the value holds a line break or control character")


def check_cookie(item: tuple[str, str]) -> None:
    name, value = item
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"cookie name {name!r} is not a valid token")
    if _CONTROL.search(value) or ";" in value:
        raise ValueError(f"cookie {name}: the value holds ';', a line break or a control character")


def check_auth(value: str) -> None:
    """`user:password` for HTTP basic auth (empty: none)."""
    if not value:
        return
    user, colon, _ = value.partition(":")
    if not colon or not user:
        raise ValueError("expected USER:PASSWORD")
    if _CONTROL.search(value):
        raise ValueError("the credentials hold a line break or control character")


def check_user_agent(value: str) -> None:
    if _CONTROL.search(value):
        raise ValueError("the User-Agent holds a line break or control character")


def check_proxy(value: str) -> None:
    """An `http://` or `https://` proxy URL, credentials allowed (`http://user:pw@proxy:3128`)."""
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError):
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{redact_url(value)}: a proxy must be an http:// or https:// URL with a host")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError(f"{redact_url(value)}: a proxy URL has no path, query or fragment")


def redact_url(value: str) -> str:
    """`value` with the password of its userinfo hidden."""
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError):
        return HIDDEN
    return str(url.with_password(HIDDEN)) if url.password is not None else value


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A crawl's options as they may be shown: cookie values, the password, secret-looking
    header values and proxy passwords replaced by `***`."""
    shown = dict(options)
    if shown.get("cookies"):
        shown["cookies"] = {name: HIDDEN for name in shown["cookies"]}
    if shown.get("headers"):
        shown["headers"] = {
            name: HIDDEN if is_secret_header(name) else value for name, value in shown["headers"].items()
        }
    if shown.get("auth"):
        shown["auth"] = str(shown["auth"]).partition(":")[0] + ":" + HIDDEN
    if shown.get("proxies"):
        shown["proxies"] = [redact_url(url) for url in shown["proxies"]]
    return shown
