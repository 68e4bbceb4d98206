"""Start a job, keep only its id, look it up later and wait for its result."""
from golem_sync import GolemNetwork


def main() -> None:
    with GolemNetwork(package={"image_tag": "golem/alpine:latest"}) as golem:
        job = golem.create_job()
        job.start_work(lambda ctx: ctx.run("uname -a").stdout)
        job_id = job.id
        del job
        # ... later, e.g. in another request handler:
        same_job = golem.get_job_by_id(job_id)
        assert same_job is not None
        print(job_id, "->", same_job.wait_for_result(timeout=120).strip())


if __name__ == "__main__":
    main()
