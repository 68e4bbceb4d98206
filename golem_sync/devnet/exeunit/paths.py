"""Container paths to host paths for one activity: the exe-unit's path mapper. Pure (no I/O but
``Path.resolve``).

Container paths (``/golem/work``, ``/golem/input``, ``/golem/output``, ``/golem/resources``, and any
other absolute path in transfers) map to ``work_dir/<path>``; a path escaping ``work_dir`` is
refused with :class:`~golem_sync.devnet.errors.ExeUnitError`.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

from ..errors import ExeUnitError

__all__ = ["CONTAINER_DIRS", "PathMapper"]

#: The container directories a Golem VM image offers; created under ``work_dir`` at start.
CONTAINER_DIRS = ("/golem/work", "/golem/input", "/golem/output", "/golem/resources")

# A container dir inside a longer argument (e.g. a shell snippet), not part of another word or
# path: "/golem/work/x" and "cd /golem/work;" match, "/golem/workshop" and "/a/golem/work" do not.
_CONTAINER_DIR_RE = re.compile(r"(?<![\w/.])/golem/(?:work|input|output|resources)(?![\w.-])")


class PathMapper:
    """Maps one activity's container paths below ``work_dir`` (resolved at construction)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = Path(work_dir).resolve()

    def container_path(self, path: str) -> Path:
        """The host path of a container path; raises :class:`ExeUnitError` if it escapes."""
        if not path.startswith("/"):
            path = "/golem/work/" + path  # relative container paths are relative to the cwd
        # normpath would clamp "/a/../../x" to "/x"; a path climbing above the container root
        # is a requestor bug or an attack, so it is refused instead.
        depth = 0
        for part in path.split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    raise ExeUnitError(f"container path {path!r} escapes the activity directory")
            elif part not in ("", "."):
                depth += 1
        norm = posixpath.normpath(path)
        host = (self.work_dir / norm.lstrip("/")).resolve()
        if host != self.work_dir and self.work_dir not in host.parents:
            raise ExeUnitError(f"container path {path!r} escapes the activity directory")
        return host

    def map_arg(self, arg: str) -> str:
        """Rewrite container paths inside one ``run`` argument (also inside shell snippets)."""
        for cdir in CONTAINER_DIRS:
            if arg == cdir or arg.startswith(cdir + "/"):
                return str(self.container_path(arg))  # a whole path: checked for escapes
        root = str(self.work_dir)
        return _CONTAINER_DIR_RE.sub(lambda m: root + m.group(0), arg)
