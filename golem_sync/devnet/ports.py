"""Free loopback ports for the devnet's processes.

A port is "free" when we could bind it on 127.0.0.1 a moment ago. Another process may
still take it before the daemon binds it, so callers that start a daemon should treat a
bind failure as retryable. Ports handed out by this process are remembered so that two
devnets started side by side in one process never get the same port.
"""
from __future__ import annotations

import random
import socket
import threading
from typing import Set

from .errors import DevnetConfigError

__all__ = ["free_port", "free_short_port", "is_port_free"]

_lock = threading.Lock()
# Ports this process already handed out; never handed out twice.
_handed_out: Set[int] = set()

#: yagna's central-net host parser accepts a port of at most 4 digits.
SHORT_PORT_RANGE = (1024, 9999)


def is_port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port chosen by the kernel (binding port 0)."""
    with _lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise DevnetConfigError("no free loopback port found")


def free_short_port(host: str = "127.0.0.1", low: int = SHORT_PORT_RANGE[0], high: int = SHORT_PORT_RANGE[1]) -> int:
    """A free TCP port in ``low..high`` (at most 4 digits by default), for yagna's GSB/central net.

    The kernel only picks ephemeral (5-digit) ports for port 0, so this tries random ports in the range.
    """
    if not (1 <= low <= high <= 65535):
        raise DevnetConfigError(f"invalid port range {low}..{high}")
    rng = random.SystemRandom()
    with _lock:
        for _ in range(200):
            port = rng.randint(low, high)
            if port in _handed_out:
                continue
            if is_port_free(port, host):
                _handed_out.add(port)
                return port
    raise DevnetConfigError(f"no free loopback port in {low}..{high}")
