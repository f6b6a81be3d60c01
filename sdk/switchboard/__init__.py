"""Switchboard Python SDK."""
