"""Resumable generation jobs: a killed job resumes without regenerating a finished row, torn
lines are tolerated, changed template/model/params invalidate the cache, failed rows are kept
with their error, and the manifest says what was made and how."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from corral.core.errors import CorralError
from corral.core.io import file_sha256, read_jsonl
from corral.infer.engine import SamplingParams
from corral.store.jobs import GenerationJob, manifest_path, write_manifest

ROWS = [{"id": i, "x": i * 10} for i in range(10)]
MODEL = {"kind": "endpoint", "url": "http://h/v1", "model": "m"}


class Killed(BaseException):
    """Stands in for the process dying: not an Exception, so the job does not record it."""


@dataclass
class Counter:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0


def make_fn(die_on_call=None, usage=None):
    """A row function that doubles x and records which rows it was asked for."""
    asked = []

    def fn(batch):
        if die_on_call is not None and len(asked) == die_on_call:
            raise Killed()
        asked.append([r["id"] for r in batch])
        if usage is not None:
            usage.requests += len(batch)
            usage.completion_tokens += 5 * len(batch)
        return [{"id": r["id"], "y": r["x"] * 2} for r in batch]
    fn.asked = asked
    fn.rows = lambda: [i for ids in asked for i in ids]
    return fn


def job(out, **kw):
    kw = {"template": "Q: {x}", "model": MODEL, "params": {"temperature": 0}, "batch_size": 2,
          "progress": False, **kw}
    return GenerationJob(out, **kw)


@pytest.fixture
def reference(tmp_path):
    """The bytes of an uninterrupted run's output."""
    out = tmp_path / "ref" / "out.jsonl"
    job(out).run(ROWS, make_fn())
    return out.read_bytes()


def test_a_crashed_job_resumes_where_it_stopped(tmp_path, reference):
    out = tmp_path / "out.jsonl"
    crashing = make_fn(die_on_call=2)
    with pytest.raises(Killed):
        job(out).run(ROWS, crashing)
    assert crashing.rows() == [0, 1, 2, 3] and not out.exists()
    again = make_fn()
    report = job(out).run(ROWS, again)
    assert again.rows() == [4, 5, 6, 7, 8, 9]
    assert (report.generated, report.reused, report.failed) == (6, 4, 0)
    assert out.read_bytes() == reference
    idle = make_fn()  # a third run has nothing left to do
    report = job(out).run(ROWS, idle)
    assert idle.asked == [] and (report.generated, report.reused) == (0, 10)
    assert out.read_bytes() == reference


CHILD = """
import os, signal, sys
from corral.store.jobs import GenerationJob
rows = [{"id": i, "x": i * 10} for i in range(10)]
def fn(batch):
    if batch[0]["id"] == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return [{"id": r["id"], "y": r["x"] * 2} for r in batch]
GenerationJob(sys.argv[1], template="Q: {x}", params={"temperature": 0}, batch_size=1,
              progress=False, model=%r).run(rows, fn)
""" % (MODEL,)


def test_a_job_killed_with_sigkill_resumes(tmp_path, reference):
    out = tmp_path / "out.jsonl"
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(out)],
                           capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert len(read_jsonl(f"{out}.partial")) == 5 and not out.exists()
    again = make_fn()
    report = job(out).run(ROWS, again)  # batch size differs from the child's: keys do not care
    assert again.rows() == [5, 6, 7, 8, 9] and report.reused == 5
    assert out.read_bytes() == reference


def test_a_torn_last_line_is_skipped_and_cut_off(tmp_path, reference):
    out = tmp_path / "out.jsonl"
    with pytest.raises(Killed):
        job(out).run(ROWS, make_fn(die_on_call=3))
    partial = tmp_path / "out.jsonl.partial"
    with open(partial, "ab") as f:  # what a kill -9 in the middle of a write leaves
        f.write(b'{"key": "0123", "index": 6, "outp')
    again = make_fn()
    report = job(out).run(ROWS, again)
    assert again.rows() == [6, 7, 8, 9] and report.reused == 6
    assert out.read_bytes() == reference
    lines = partial.read_bytes().splitlines()
    assert len(lines) == 10 and all(json.loads(line) for line in lines)


@pytest.mark.parametrize("change", [{"params": {"temperature": 1.0}},
                                    {"template": "Question: {x}"},
                                    {"model": dict(MODEL, model="other")}])
def test_changing_params_template_or_model_regenerates(tmp_path, change):
    out = tmp_path / "out.jsonl"
    job(out).run(ROWS, make_fn())
    fn = make_fn()
    report = job(out, **change).run(ROWS, fn)
    assert fn.rows() == list(range(10)) and (report.generated, report.reused) == (10, 0)
    fn = make_fn()  # and back: the first setting's rows are still in the cache
    assert job(out).run(ROWS, fn).reused == 10 and fn.asked == []


def test_failed_rows_are_kept_with_their_error_and_retried_on_request(tmp_path):
    out = tmp_path / "out.jsonl"
    fixed = make_fn()

    def flaky(batch):
        if batch[0]["id"] == 6:  # the whole batch (rows 6, 7) raises
            raise TimeoutError("server went away")
        return [ValueError("no answer") if r["id"] == 3 else o
                for r, o in zip(batch, fixed(batch))]
    report = job(out).run(ROWS, flaky)
    assert (report.generated, report.failed) == (7, 3)
    assert report.failures == [{"index": 3, "error": "ValueError: no answer"},
                               {"index": 6, "error": "TimeoutError: server went away"},
                               {"index": 7, "error": "TimeoutError: server went away"}]
    assert [r["id"] for r in read_jsonl(out)] == [0, 1, 2, 4, 5, 8, 9]
    failed = read_jsonl(f"{out}.failed.jsonl")
    assert [(f["index"], f["row"]) for f in failed] == [(i, ROWS[i]) for i in (3, 6, 7)]

    fn = make_fn()  # not asked to retry: the failures stay, nothing is generated
    report = job(out).run(ROWS, fn)
    assert fn.asked == [] and report.failed == 3 and report.generated == 0
    assert json.loads(manifest_path(out).read_text())["counts"]["failed_before"] == 3

    fn = make_fn()
    report = job(out, retry_failed=True).run(ROWS, fn)
    assert fn.rows() == [3, 6, 7] and (report.retried, report.generated, report.failed) == (3, 3, 0)
    assert [r["id"] for r in read_jsonl(out)] == list(range(10))
    assert not (tmp_path / "out.jsonl.failed.jsonl").exists()


def test_a_wrong_number_of_outputs_fails_the_batch_and_corral_errors_stop(tmp_path):
    report = job(tmp_path / "a.jsonl").run(ROWS[:2], lambda batch: [{}])
    assert report.failed == 2 and "returned 1 outputs for 2 rows" in report.failures[0]["error"]

    def mistake(batch):
        raise CorralError("bad key")
    with pytest.raises(CorralError, match="bad key"):
        job(tmp_path / "b.jsonl").run(ROWS, mistake)


def test_the_manifest_records_what_was_made(tmp_path):
    out = tmp_path / "out.jsonl"
    usage = Counter()
    with pytest.raises(Killed):
        job(out, usage=usage).run(ROWS, make_fn(die_on_call=1, usage=usage))
    params = SamplingParams(max_new_tokens=8, stop=("END",), seed=1)
    template = "Q: {x}"
    job(out, params=params, usage=usage).run(ROWS[:3], make_fn(usage=usage))
    report = job(out, params=params, usage=usage, extra={"source": "seeds.jsonl"}).run(
        ROWS, make_fn(usage=usage))
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["output"] == {"path": str(out), "sha256": file_sha256(out),
                                  "bytes": out.stat().st_size, "rows": 10}
    assert manifest["counts"] == {"rows_in": 10, "generated": 7, "reused": 3, "failed": 0,
                                  "failed_before": 0, "retried": 0}
    assert manifest["usage"] == {"prompt_tokens": 0, "completion_tokens": 35, "requests": 7,
                                 "retries": 0} == report.usage  # this run's share only
    assert manifest["model"] == MODEL and manifest["kind"] == "generation"
    assert manifest["template_sha256"] == hashlib.sha256(template.encode()).hexdigest()
    assert manifest["params"]["stop"] == ["END"] and manifest["params"]["max_new_tokens"] == 8
    assert manifest["wall_s"] >= 0 and manifest["corral_version"]
    assert manifest["failed_file"] is None and manifest["source"] == "seeds.jsonl"


def test_write_manifest_for_any_data_file(tmp_path):
    data = tmp_path / "curated.jsonl"
    data.write_text('{"a": 1}\n{"a": 2}\n')
    dest = write_manifest(data, kind="curated", parent="out.jsonl", kept=2)
    manifest = json.loads(dest.read_text())
    assert dest == tmp_path / "curated.jsonl.manifest.json"
    assert manifest["output"]["rows"] == 2 and manifest["output"]["sha256"] == file_sha256(data)
    assert (manifest["kind"], manifest["parent"], manifest["kept"]) == ("curated", "out.jsonl", 2)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_repeated_rows_are_generated_independently(tmp_path):
    fn = make_fn()
    report = job(tmp_path / "out.jsonl").run([ROWS[0]] * 3, fn)
    assert fn.rows() == [0, 0, 0] and report.generated == 3
    assert len(set(job(tmp_path / "x").keys([ROWS[0]] * 3))) == 3


def test_two_jobs_on_one_output_are_refused(tmp_path):
    out = tmp_path / "out.jsonl"

    def nested(batch):
        job(out).run(ROWS, make_fn())
        return [{}] * len(batch)
    with pytest.raises(CorralError, match="another job is writing"):
        job(out).run(ROWS, nested)
