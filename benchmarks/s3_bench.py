"""Object-storage numbers of issue 12, side by side in one invocation (medians of ``--repeats``):

- the embedded full run (``pipeline.py train`` on data/) with ``work_dir`` + ``registry_dir`` on a local
  moto S3 endpoint, as a ratio to the same run on local disk (target <= 1.3);
- the no-op rerun on S3, as a ratio to a bare ``python -c "import luigi, pandas, sklearn"`` (target <= 3).

Runs alternate (local, S3, local, S3, ...) so that a busy machine slows both alike. moto is a Python
server in this process; MinIO or AWS S3 answer at other speeds (docs/object-storage.md).

    python benchmarks/s3_bench.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def config(folder: Path, work: str, registry: str, endpoint: str) -> dict[str, str]:
    cfg = folder / "bench.cfg"
    cfg.write_text(
        f"[paths]\nwork_dir = {work}\nregistry_dir = {registry}\n"
        f"[s3]\nendpoint_url = {endpoint}\naws_access_key_id = {KEYS['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {KEYS['AWS_SECRET_ACCESS_KEY']}\nregion_name = us-east-1\n"
    )
    return {
        **os.environ,
        **KEYS,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LUIGI_CONFIG_PATH": str(cfg),
        "TMPDIR": str(folder),
        "XDG_CACHE_HOME": str(folder / "cache"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in KEYS.items() if "KEY" in k})
    train = [sys.executable, str(ROOT / "pipeline.py"), "train", "--workers", "1"]
    times: dict[str, list[float]] = {"local": [], "s3": [], "noop_s3": [], "imports": []}
    try:
        for i in range(repeats):
            with tempfile.TemporaryDirectory(prefix="s3bench-") as tmp:
                folder = Path(tmp)
                local_env = config(folder, str(folder / "work"), str(folder / "models"), endpoint)
                times["local"].append(timed(train, local_env))
                bucket = f"bench-{os.getpid()}-{i}"
                client.create_bucket(Bucket=bucket)
                s3_env = config(folder, f"s3://{bucket}/work", f"s3://{bucket}/registry", endpoint)
                times["s3"].append(timed(train, s3_env))
                times["noop_s3"].append(timed(train, s3_env))
                times["imports"].append(timed([sys.executable, "-c", "import luigi, pandas, sklearn"], local_env))
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"medians of {repeats}, load average {load:.1f} on {os.cpu_count()} CPUs")
    print("| measure | local | S3 (moto) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| full run (train, embedded months) | {med['local']:.1f} s | {med['s3']:.1f} s | "
        f"{med['s3'] / med['local']:.2f} | <= 1.3 |"
    )
    print(
        f"| no-op rerun on S3 vs bare imports | {med['imports']:.2f} s | {med['noop_s3']:.2f} s | "
        f"{med['noop_s3'] / med['imports']:.2f} | <= 3 |"
    )
    print("raw:", {k: [round(x, 2) for x in v] for k, v in times.items()})


if __name__ == "__main__":
    main()
