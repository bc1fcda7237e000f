"""A free TCP port, for the processes DareU starts itself (an embedded Ray's GCS, a loopback head, `dareu serve`)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS's choice; another process could still take it before we bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
