"""`python -m services.runtime` is `switchboard up`."""

from __future__ import annotations

from .cli import up

if __name__ == "__main__":
    up.main(prog_name="python -m services.runtime")
