"""The media service process (python -m services.media): the SIP edge, RTP and prompts."""

from __future__ import annotations

from services.kernel.service import run_service
from services.media.app import main

if __name__ == "__main__":
    run_service("media", main)
