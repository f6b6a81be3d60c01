"""The SIP front process (python -m services.media.front): the public SIP port shared among media workers."""

from __future__ import annotations

from services.kernel.service import run_service
from services.media.front.server import main

if __name__ == "__main__":
    run_service("media_front", main)
