"""Every request to the API server passes through here: counted, its reply bounded, its bearer
token read the way the controller reads its own secrets.

The client library (lightkube) builds and decodes requests; this transport sits under it, so
nothing it does escapes: each request (a watch reconnect too) is counted under its verb and
resource; a reply is refused past `MAX_BODY` (a watch: past `MAX_LINE` without a newline) and
never decompressed; the service-account token is read from a regular file only, at most 64 KiB,
without blocking, in a worker thread, once a minute (client-go's period) and at once after a 401.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2

from controller.bounded_read import IDENTITY
from controller.kube.wire import route
from controller.runtime.clock import SYSTEM, Clock
from controller.secret_file import SecretFile, one_word

MAX_BODY = 4 * 1024 * 1024
"""A reply that is not a watch: one object (the API server stores at most ~1.5 MiB) or one page
of a list (`limit` items)."""
MAX_LINE = 2 * 1024 * 1024
"""One watch event: one object and its envelope."""
TOKEN_RECHECK = 60.0
"""The token file is looked at this often (an fstat; read only when it changed)."""


class ReplyTooLarge(httpx2.TransportError):
    """The API server sent more than the limit: refused while streaming, never buffered."""


class CredentialError(httpx2.TransportError):
    """No usable bearer token (the file is missing, not a regular file, too large, empty)."""


Counter = Callable[[str, str, int], None]
"""Told `(verb, resource, code)` of every request; code 0 when no answer came."""


def verb_of(request: httpx2.Request) -> tuple[str, str]:
    """`(verb, resource)` as RBAC names them: get, list, watch, create, update, patch, delete."""
    resource, _, name = route(request.url.path)
    if request.method == "GET":
        if request.url.params.get("watch") in {"true", "1"}:
            return "watch", resource
        return ("get" if name else "list"), resource
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return verbs.get(request.method, request.method.lower()), resource


def is_watch(request: httpx2.Request) -> bool:
    return request.url.params.get("watch") in {"true", "1"}


class TokenFile:
    """A bearer token in a file the kubelet rotates (the projected service-account token)."""

    def __init__(self, path: Path, clock: Clock = SYSTEM) -> None:
        self.path = path
        self._secret = SecretFile(path, "", _check_token)
        self._clock = clock
        self._checked_at = -math.inf
        self._lock = asyncio.Lock()
        self.error: str | None = None

    async def bearer(self, *, reread: bool = False) -> str:
        """The current token; `reread` after a 401 (the file may have rotated since)."""
        async with self._lock:
            if reread or self._clock.now() - self._checked_at >= TOKEN_RECHECK:
                self._checked_at = self._clock.now()
                check = await asyncio.to_thread(self._secret.refresh)
                self.error = check.error
        if not self._secret.value:
            raise CredentialError(f"service-account token: {self.error or 'none read yet'}")
        return self._secret.value


def _check_token(text: str) -> None:
    if not text:
        raise ValueError("empty")
    if not one_word(text):
        raise ValueError("holds whitespace or a control character inside")


class KubeTransport(httpx2.AsyncBaseTransport):
    """Wraps the transport that talks to the API server (TLS set up from the kubeconfig)."""

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        *,
        token: TokenFile | None = None,
        on_request: Counter | None = None,
        max_body: int = MAX_BODY,
        max_line: int = MAX_LINE,
    ) -> None:
        self._inner, self._token, self._on_request = inner, token, on_request
        self._max_body, self._max_line = max_body, max_line

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        verb, resource = verb_of(request)
        request.headers.update(IDENTITY)  # nothing compressed: no decompression bomb
        try:
            response = await self._send(request, reread=False)
            if response.status_code == 401 and self._token is not None:
                # The kubelet may have rotated the token: read it again and retry once.
                self._count(verb, resource, 401)
                await response.aclose()
                response = await self._send(request, reread=True)
                if response.status_code == 401 and self._token.error:
                    await response.aclose()
                    self._count(verb, resource, 401)
                    raise CredentialError(f"service-account token: {self._token.error} (401)")
        except CredentialError:
            raise
        except BaseException:
            self._count(verb, resource, 0)
            raise
        self._count(verb, resource, response.status_code)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise ReplyTooLarge(f"a compressed reply ({encoding[:20]})")
        declared = response.headers.get("content-length", "")
        if not is_watch(request) and declared.isdigit() and int(declared) > self._max_body:
            await response.aclose()
            raise ReplyTooLarge(f"a reply of {int(declared)} bytes ({_more(self._max_body)})")
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        check = _lines_at_most(self._max_line) if is_watch(request) else _at_most(self._max_body)
        bounded = _Bounded(stream, check)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=bounded,
            extensions=response.extensions,
            request=request,
        )

    async def _send(self, request: httpx2.Request, *, reread: bool) -> httpx2.Response:
        if self._token is not None:
            token = await self._token.bearer(reread=reread)
            request.headers["Authorization"] = f"Bearer {token}"
        return await self._inner.handle_async_request(request)

    def _count(self, verb: str, resource: str, code: int) -> None:
        if self._on_request is not None:
            self._on_request(verb, resource, code)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _more(limit: int) -> str:
    return f"more than {limit // (1024 * 1024)} MiB"


class _Bounded(httpx2.AsyncByteStream):
    """A reply refused while streaming, as soon as `check` (told of each chunk) refuses it."""

    def __init__(self, inner: httpx2.AsyncByteStream, check: Callable[[bytes], None]) -> None:
        self._inner, self._check = inner, check

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._check(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _at_most(limit: int) -> Callable[[bytes], None]:
    """A check that refuses a reply past `limit` bytes."""
    size = 0

    def check(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if size > limit:
            raise ReplyTooLarge(f"a reply of {_more(limit)}")

    return check


def _lines_at_most(limit: int) -> Callable[[bytes], None]:
    """A check that refuses a watch stream as soon as one line (one event) passes `limit`."""
    pending = 0

    def check(chunk: bytes) -> None:
        nonlocal pending
        # The length of each line this chunk ends, and of the one it leaves open.
        parts = chunk.split(b"\n")
        lengths = [pending + len(parts[0]), *(len(part) for part in parts[1:])]
        pending = lengths[-1]
        if max(lengths) > limit:
            raise ReplyTooLarge(f"a watch event of {_more(limit)}")

    return check
