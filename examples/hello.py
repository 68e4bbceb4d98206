"""Hello, Golem: one job, every lifecycle event, the state before and after, the result.

Run it against a local devnet (no internet, no funds needed):

    python -m golem_sync.devnet run -- python examples/hello.py

or against your own yagna with YAGNA_APPKEY (and YAGNA_API_URL) set.
"""
import logging

from golem_sync import GolemNetwork, signals


def worker(ctx):
    print(f"running on {ctx.provider_name} ({ctx.provider_id})")
    return ctx.run("echo 'Hello, Golem!'").stdout


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with GolemNetwork(package={"image_tag": "golem/alpine:latest"}, payment={"budget": 1.0}) as golem:
        job = golem.create_job()
        for signal in (signals.job_created, signals.job_started, signals.job_succeeded,
                       signals.job_failed, signals.job_cancelled, signals.job_ended):
            signal.connect_via(job, weak=False)(lambda sender, _n=signal.name, **kw: print(f"event: {_n}"))
        print("state before:", job.state)
        job.start_work(worker)
        result = job.wait_for_result(timeout=120)
        print("state after:", job.state)
        print("result:", result.strip())


if __name__ == "__main__":
    main()
