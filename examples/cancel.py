"""Cancel a running job: cancel() returns once the job has ended and released its provider."""
import time

from golem_sync import GolemNetwork


def main() -> None:
    with GolemNetwork(package={"image_tag": "golem/alpine:latest"}) as golem:
        job = golem.create_job()
        job.start_work(lambda ctx: ctx.run("sleep 60"))
        time.sleep(5)
        started = time.monotonic()
        job.cancel(timeout=30)
        print(f"cancelled in {time.monotonic() - started:.2f}s; state: {job.state}; error: {job.error!r}")


if __name__ == "__main__":
    main()
