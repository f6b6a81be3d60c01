"""`switchboard up --api-workers N`: N API processes on one listening socket the runtime binds once (a second
bind of the port fails instead of sharing it); 2 by default from the CLI."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from services.runtime.runtime import Options, api_listener, api_specs, child_names
from tests.service_procs import free_port


def test_api_specs_share_one_inherited_listening_socket() -> None:
    port = free_port()
    listener = api_listener("127.0.0.1", port)
    try:
        specs = api_specs({"SB_HTTP_PORT": str(port)}, listener, 3)
        fd = listener.fileno()
        assert [s.name for s in specs] == ["api-1", "api-2", "api-3"]
        for spec in specs:
            assert spec.argv == [sys.executable, "-m", "services.api"]
            assert spec.env["SB_API_LISTEN_FD"] == str(fd) and spec.pass_fds == (fd,)
        assert listener.get_inheritable()
        # The port is taken once: another runtime (or anything else) cannot quietly share it.
        with pytest.raises(OSError), socket.create_server(("127.0.0.1", port)):
            pass
    finally:
        listener.close()


def test_child_names_expand_the_api_only_with_several_workers() -> None:
    one = Options(data_dir=Path("/tmp/x"), services=("api", "routing"))
    assert child_names(one) == ["api", "routing"]
    two = Options(data_dir=Path("/tmp/x"), services=("api", "routing"), api_workers=2)
    assert child_names(two) == ["api-1", "api-2", "routing"]
