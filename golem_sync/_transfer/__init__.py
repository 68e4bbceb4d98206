"""Requestor-side storage for transfers: gftp served through yagna's GSB API (no gftp binary)."""
from .gftp import CHUNK_SIZE, BytesSource, FileSource, Publication, Receipt
from .service import GsbService

__all__ = ["CHUNK_SIZE", "BytesSource", "FileSource", "Publication", "Receipt", "GsbService"]
