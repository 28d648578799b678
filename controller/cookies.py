"""A cookie jar that stores nothing, for every HTTP client of the controller.

Probes and gateway calls are stateless. A consumer that sets a new cookie on every response
would otherwise grow the Cookie header of every probe until the server answers 400 for good
(a stock aiohttp server refuses headers past 8 KiB: about 400 probes, 33 minutes at 5 s).
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy


def no_cookies() -> CookieJar:
    """The `cookies=` of an httpx client: every Set-Cookie is refused, so none is ever sent.
    (A jar, not an `httpx.Cookies`: the client copies the latter into a default jar.)"""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
