"""JSON views: start a job, read its state, wait for its result, cancel it — from any worker."""
import os

from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from golem_sync import GolemError, GolemTimeoutError, GolemUserError

from .golem import network

MAX_WAIT_SEC = 100  # keep below gunicorn's worker --timeout


def _job(job_id):
    job = network().get_job_by_id(job_id)
    if job is None:
        raise Http404(f"no job {job_id}")
    return job


def _describe(job, status=200, **extra):
    error = extra.pop("error", None) or job.error
    return JsonResponse(dict(id=job.id, state=str(job.state), error=str(error) if error else None,
                             worker=os.getpid(), **extra), status=status)


@csrf_exempt
@require_POST
def start_job(request):
    cmd = request.POST.get("cmd", "echo 'Hello, Golem!'")
    job = network().create_job()
    job.start_work(lambda ctx: ctx.run(cmd).stdout)  # a str: JSON-serialisable, so the store keeps it
    return JsonResponse({"id": job.id, "worker": os.getpid()}, status=202)


@require_GET
def job_state(request, job_id):
    return _describe(_job(job_id))


@require_GET
def job_result(request, job_id):
    job = _job(job_id)
    timeout = min(float(request.GET.get("timeout", 30)), MAX_WAIT_SEC)
    try:
        result = job.wait_for_result(timeout=timeout)
    except GolemTimeoutError as exc:
        return _describe(job, status=202 if exc.phase == "wait" else 200)
    except GolemUserError as exc:
        return _describe(job, status=409, error=exc)
    except Exception:
        return _describe(job)  # failed or cancelled: the error is in the answer
    return _describe(job, result=result)


@csrf_exempt
@require_POST
def cancel_job(request, job_id):
    job = _job(job_id)
    try:
        job.cancel(timeout=60)
    except GolemUserError as exc:
        return _describe(job, status=409, error=exc)
    except GolemError as exc:
        return _describe(job, status=500, error=exc)
    return _describe(job)
