"""The terminal tells the result: a result block after every job, timestamps on log lines, and the
``status`` / ``invalidate`` commands (real processes)."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_cli import cli


def test_a_job_ends_with_its_result_block_and_timestamped_log_lines(pipeline_env, tmp_path):
    run = cli(pipeline_env.cfg_file, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    err = run.stderr
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO: ", err, re.M), err[:500]
    block = err[err.index("===== result") :]
    assert re.search(r"^ran +\d+ task\(s\) in [\d.]+ s$", block, re.M)
    assert re.search(r"^  CandidateScore +3 x +[\d.]+ s$", block, re.M), block
    assert "registered   green-trip-duration v0001" in block
    assert re.search(r"^algorithm    \w+", block, re.M)
    assert re.search(r"^test RMSE    [\d.]+ min on 2021-03 vs baseline [\d.]+ \(ratio [\d.]+\)$", block, re.M)
    assert re.search(r"^gate         (promoted|not promoted): ", block, re.M)
    assert "production   v0001" in block
    assert "report       " + str(pipeline_env.registry_dir) in block
    assert "exit code    0" in block


@pytest.mark.slow
def test_status_and_invalidate_from_the_command_line(pipeline_env, tmp_path):
    before = cli(pipeline_env.cfg_file, "status", cwd=tmp_path)
    assert before.returncode == 0, before.stderr[-2000:]
    assert re.search(r"^· CandidateScore_\S+ +no output yet$", before.stdout, re.M), before.stdout
    assert "would run" in before.stdout
    assert not any(pipeline_env.work_dir.glob("[!.]*/*"))  # status runs nothing
    assert cli(pipeline_env.cfg_file, cwd=tmp_path).returncode == 0
    done = cli(pipeline_env.cfg_file, "status", cwd=tmp_path)
    assert "nothing to run: the job is complete" in done.stdout

    marked = cli(pipeline_env.cfg_file, "invalidate", "ValidatedTrips", "--month", "2021-03", cwd=tmp_path)
    assert marked.returncode == 0, marked.stderr[-2000:]
    assert marked.stdout.startswith("invalidated ValidatedTrips_green_2021_03_")
    after = cli(pipeline_env.cfg_file, "status", cwd=tmp_path)
    assert re.search(r"^· ValidatedTrips_green_2021_03_\S+ +invalidated", after.stdout, re.M), after.stdout
    rerun = cli(pipeline_env.cfg_file, cwd=tmp_path)
    assert rerun.returncode == 0
    # the same model trained on the same data is not registered a second time (issue 23.5)
    assert "registered   green-trip-duration v0001 (the new model is byte-identical" in rerun.stderr
    assert not re.search(r"^  CandidateScore ", rerun.stderr, re.M)  # no model was retrained

    wrapper = cli(pipeline_env.cfg_file, "invalidate", "TrainingPipeline", cwd=tmp_path)
    # a wrapper has no outputs of its own: not a choice, and the error lists the families that are
    assert wrapper.returncode == 2 and "invalid choice: 'TrainingPipeline'" in wrapper.stderr
    assert "ValidatedTrips" in wrapper.stderr
