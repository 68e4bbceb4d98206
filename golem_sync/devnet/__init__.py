"""An offline Golem network on the real yagna daemon, for tests and demos.

Installed with the ``devnet`` extra. The core of golem_sync never imports this package.
Everything here runs on the host, unsandboxed: it is a test network, not a sandbox.
"""
from __future__ import annotations
