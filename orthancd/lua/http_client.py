"""The HTTP client behind Lua's HttpGet/HttpPost/HttpPut/HttpDelete.

One client per Lua state, as Orthanc's: the credentials and the timeout set
by SetHttpCredentials/SetHttpTimeout stay for the requests that follow, the
headers are those of each call.  Requests block: they run on the Lua pool's
thread, never on the reactor.
"""
from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request


class HttpFailure(Exception):
    """No HTTP answer at all (connection refused, timeout, bad URL): Orthanc's
    libcurl error."""


class _NoRedirectErrors(urllib.request.HTTPErrorProcessor):
    """Hand every answer back, whatever its status: the Lua functions decide."""

    def http_response(self, request, response):
        return response

    https_response = http_response


_OPENER = urllib.request.build_opener(_NoRedirectErrors)


class LuaHttpClient:
    def __init__(self, default_timeout: float):
        self.timeout = default_timeout
        self._credentials: tuple[str, str] | None = None

    def set_credentials(self, username: str, password: str) -> None:
        self._credentials = (username, password)

    def set_timeout(self, seconds: int) -> None:
        # libcurl: 0 means no timeout.
        self.timeout = seconds if seconds > 0 else None

    def request(self, method: str, url: str, body: bytes | None,
                headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of the answer; raises HttpFailure without one."""
        request = urllib.request.Request(url, data=body if body else None, method=method)
        if self._credentials is not None:
            token = base64.b64encode(("%s:%s" % self._credentials).encode("utf-8")).decode("ascii")
            request.add_header("Authorization", "Basic " + token)
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with _OPENER.open(request, timeout=self.timeout) as answer:
                return answer.status, answer.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise HttpFailure(str(e)) from None
