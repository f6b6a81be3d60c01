"""The API's HTTP/1.1 protocol for uvicorn: uvicorn's own, except that a request its parser refuses (a
control byte in a header, a broken request line) is answered with problem details like every other error
of the API, not uvicorn's plain-text "Invalid HTTP request received."."""

from __future__ import annotations

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, ProblemDetails

__all__ = ["ProblemHttpProtocol", "bad_request_body"]


def bad_request_body(reason: str) -> bytes:
    return msgspec.json.encode(
        ProblemDetails(
            type=f"{PROBLEM_BASE}bad-request",
            title="Bad request",
            status=400,
            detail=f"{reason.rstrip('.')}: the request is not valid HTTP (for instance a control byte in a header)",
        )
    )


class ProblemHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = bad_request_body(msg)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
