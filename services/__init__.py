"""Switchboard's services. Importing any of them first keeps httpx's command-line client (and rich with it)
out of the process: start-up time no service needs (services/kernel/lean.py)."""

from services.kernel.lean import refuse_httpx_cli

refuse_httpx_cli()
