"""`python -m services.api`: serve the control-plane API with uvicorn on SB_BIND_HOST:SB_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from services.kernel.config import load_settings
from services.kernel.log import configure_logging

from .app import create_app


def main() -> None:
    settings = load_settings()
    configure_logging("api", settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # uvicorn handles SIGTERM/SIGINT: it stops accepting, finishes requests, then runs the lifespan exit.
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
