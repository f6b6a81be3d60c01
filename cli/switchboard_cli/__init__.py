"""The `switchboard` command-line interface, built on the Python SDK."""
