"""`python -m services.api`: serve the control-plane API with uvicorn on SB_BIND_HOST:SB_HTTP_PORT, or on the
listening socket inherited as file descriptor SB_API_LISTEN_FD (several API processes behind one port:
`switchboard up --api-workers N`, docs/runtime.md)."""

from __future__ import annotations

import os
import socket

import uvicorn

from services.kernel.config import load_settings
from services.kernel.log import configure_logging

from .app import create_app
from .http_protocol import ProblemHttpProtocol
from .signalling import MAX_MESSAGE_BYTES

WS_PING_S = 5.0


def main() -> None:
    settings = load_settings()
    configure_logging("api", settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # uvicorn handles SIGTERM/SIGINT: it stops accepting, finishes requests, then runs the lifespan exit.
        timeout_graceful_shutdown=10,
        # uvicorn's HTTP/1.1, answering what its parser refuses with problem details (http_protocol.py).
        http=ProblemHttpProtocol,
        # The client address is the TCP peer unless the peer is a configured proxy (the ingress): uvicorn
        # would otherwise believe X-Forwarded-For from 127.0.0.1, i.e. from every client under
        # `switchboard up`, and per-address limits would count forged addresses.
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=list(settings.trusted_proxy_list),
        # A websocket message beyond twice the signalling limit is refused while it is read (close 1009),
        # not after 16 MiB (uvicorn's default) have been buffered; up to it, the signalling's own check
        # answers with a `too_large` error frame and the session goes on.
        ws_max_size=2 * MAX_MESSAGE_BYTES,
        # A client that vanishes without closing its socket (a frozen laptop, a cut network) is noticed
        # within WS_PING_S * 2: its socket closes and routing's grace starts (docs/agent-protocol.md).
        ws_ping_interval=WS_PING_S,
        ws_ping_timeout=WS_PING_S,
        # HTTPS and WSS for agents on other machines (`switchboard up --public-url`, docs/runtime.md):
        # browsers give the microphone only to secure origins.
        ssl_certfile=os.environ.get("SB_TLS_CERT_FILE") or None,
        ssl_keyfile=os.environ.get("SB_TLS_KEY_FILE") or None,
    )
    server = uvicorn.Server(config)
    fd = os.environ.get("SB_API_LISTEN_FD", "")
    if not fd:
        server.run()
        return
    # The runtime bound the port once and every API process accepts on it: a process that dies takes
    # only its own connections with it, and the port never refuses a client meanwhile.
    listener = socket.socket(fileno=int(fd))
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
