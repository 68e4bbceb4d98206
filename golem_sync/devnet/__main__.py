"""``python -m golem_sync.devnet``: the devnet's command line (see :mod:`.cli`)."""
from __future__ import annotations

import sys

from .cli import default_state_dir, main

__all__ = ["main", "default_state_dir"]

if __name__ == "__main__":
    sys.exit(main())
