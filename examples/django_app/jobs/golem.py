"""One GolemNetwork per worker process, created on first use (after gunicorn forked the worker).

A network (and the job store it opens) must never cross a fork: each process has its own threads,
yagna session and store identity. It is closed when the worker exits (gunicorn workers exit
normally on SIGTERM, so ``atexit`` runs): running jobs are cancelled and their agreements ended.
"""
import atexit
import threading

from django.conf import settings

from golem_sync import GolemNetwork

_lock = threading.Lock()
_network = None


def network() -> GolemNetwork:
    global _network
    with _lock:
        if _network is None:
            _network = GolemNetwork(job_store=settings.GOLEM_JOB_STORE,
                                    package={"image_tag": settings.GOLEM_IMAGE}).init()
            atexit.register(_network.close)
        return _network
