#!/usr/bin/env bash
# `make lock`: re-resolve the requirements*.txt files into their hashed locks (exact versions, sha256 of every
# file), all from ONE resolution, so that any combination of the locks installs together:
#   requirements.lock         the runtime (requirements.txt): training, serving, luigid; what `make run` installs
#   requirements-build.lock   setuptools, to install this project itself (requirements-build.txt)
#   requirements-s3.lock      the `s3` extra: what boto3 adds to the runtime
#   requirements-mlflow.lock  the `mlflow` extra: what mlflow adds to the runtime
#   requirements-dev.lock     the `dev` group: what the test and lint tools add to all of the above
# Each extra's lock holds only the packages the runtime lock does not (install them together:
# `pip install --require-hashes -r requirements.lock -r requirements-s3.lock`). Needs the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

compile() {
  local out=${*: -1}
  "$UV" pip compile --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --no-header --quiet "$@"
  sed -i '/^    #   -c .*pins\.txt$/d' "$out" # the temporary constraints file is no reason worth recording
}
# --no-emit-package for every package of the given locks: an extra's lock leaves out what they already hold
leave_out() {
  grep -hoE '^[a-z0-9][a-z0-9._-]*==' "$@" | sed 's/==$//' | sort -u | sed 's/^/--no-emit-package=/'
}

# 1. everything together: the one set of versions every lock takes its pins from. uv prefers the versions
# already in the output file: seeded with the current locks, a re-lock moves only what a changed pin needs
cat requirements*.lock >"$work/all.lock"
compile requirements.txt requirements-build.txt requirements-s3.txt requirements-mlflow.txt requirements-dev.txt \
  -o "$work/all.lock"
grep -oE '^[a-z0-9][a-z0-9._-]*==[^ ;]+' "$work/all.lock" >"$work/pins.txt"
pins=(-c "$work/pins.txt")

# 2. each lock, constrained to those versions
compile requirements.txt "${pins[@]}" -o requirements.lock
mapfile -t runtime < <(leave_out requirements.lock)
compile requirements-build.txt "${pins[@]}" "${runtime[@]}" -o requirements-build.lock
mapfile -t base < <(leave_out requirements.lock requirements-build.lock)
compile requirements.txt requirements-s3.txt "${pins[@]}" "${base[@]}" -o requirements-s3.lock
compile requirements.txt requirements-mlflow.txt "${pins[@]}" "${base[@]}" -o requirements-mlflow.lock
mapfile -t extras < <(leave_out requirements.lock requirements-build.lock requirements-s3.lock requirements-mlflow.lock)
compile requirements.txt requirements-s3.txt requirements-mlflow.txt requirements-dev.txt "${pins[@]}" "${extras[@]}" \
  -o requirements-dev.lock
