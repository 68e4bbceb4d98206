"""Twenty jobs at once; results as they complete, through concurrent.futures.as_completed."""
import concurrent.futures

from golem_sync import GolemNetwork


def main() -> None:
    with GolemNetwork(package={"image_tag": "golem/alpine:latest"}, max_workers=20) as golem:
        jobs = {}
        for n in range(20):
            job = golem.create_job()
            job.start_work(lambda ctx, n=n: ctx.run(f"echo $(( {n} * {n} ))").stdout.strip())
            jobs[job.future] = n
        for future in concurrent.futures.as_completed(jobs, timeout=300):
            print(f"{jobs[future]}^2 = {future.result()}")


if __name__ == "__main__":
    main()
