"""Quick measurement (not a benchmark): N small writes/reads through tripduration.io.storage, local disk vs the
moto S3 server on 127.0.0.1, plus the luigi S3Target.exists() a complete() check costs.

    python -m tests.storage.measure_put_get [N]

Prints one line per operation: median and total milliseconds. moto is an in-process Python server, so its
numbers bound the client-side cost, not those of AWS S3 or MinIO.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from tests.storage.conftest import AWS_ENV, AtomicMotoServer
from tripduration.io.local import LocalStorage
from tripduration.io.s3 import S3Storage, make_s3_client
from tripduration.io.storage import Storage


def timed(n: int, op: Callable[[int], object]) -> tuple[float, float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), sum(samples)


def measure(name: str, store: Storage, n: int) -> None:
    payload = os.urandom(1024)
    rows = {
        "write_bytes 1 KiB": lambda i: store.write_bytes(f"small/{i:05d}", payload),
        "read_bytes 1 KiB": lambda i: store.read_bytes(f"small/{i:05d}"),
        "exists": lambda i: store.exists(f"small/{i:05d}"),
        "create_exclusive": lambda i: store.create_exclusive(f"claims/{i:05d}", payload),
        "read_with_token + replace_if": lambda i: store.replace_if(
            f"small/{i:05d}", payload, store.read_with_token(f"small/{i:05d}")[1]
        ),
    }
    for op, fn in rows.items():
        median, total = timed(n, fn)
        print(f"{name:6s} {op:34s} n={n:4d} median {median:7.2f} ms  total {total:8.1f} ms")


def main(n: int = 200) -> None:
    os.environ.update(AWS_ENV)
    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        make_s3_client().create_bucket(Bucket="measure")
        with tempfile.TemporaryDirectory() as tmp:
            measure("local", LocalStorage(tmp), n)
        measure("moto", S3Storage("s3://measure/p"), n)
        from tasks.targets import Output

        store = S3Storage("s3://measure/p")
        median, total = timed(n, lambda i: Output(store, f"small/{i:05d}").exists())
        print(f"moto   {'Output(store, key).exists()':34s} n={n:4d} median {median:7.2f} ms  total {total:8.1f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
