"""The dashboard's JSON endpoints, its summary index (cheap over hundreds of runs), path
checks, keys, and `corral plot` (docs/dashboard.md). The browser tests are in
test_dashboard_browser.py."""
import argparse
import json
import time

import pytest
from dashboard_runs import metric_row, real_runs, synthetic_run
from fastapi import FastAPI
from fastapi.testclient import TestClient

from corral.core.errors import CorralError
from corral.serve.dashboard import DashboardOptions, check, create_dashboard_app, mount
from corral.serve.dashboard.curves import groups
from corral.serve.dashboard.index import RunIndex


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("dash")
    root = work / "runs"
    real_runs(root, work)
    synthetic_run(root, "grpo-live", method="grpo", steps=30, finished=False)
    synthetic_run(root, "sft-b", method="sft", task="gsm8k", steps=60, seed=1)
    return root


@pytest.fixture
def client(runs):
    return TestClient(create_dashboard_app(runs))


def test_run_list_with_filters(client):
    data = client.get("/dashboard/api/runs").json()
    by_name = {r["name"]: r for r in data["runs"]}
    assert set(by_name) == {"sft-a", "rft-a", "ev", "grpo-live", "sft-b"}
    assert by_name["sft-a"]["method"] == "sft" and by_name["rft-a"]["method"] == "rft"
    assert by_name["ev"]["method"] == "eval" and by_name["ev"]["task"] == "arithmetic"
    assert by_name["sft-a"]["status"] == "done" and by_name["grpo-live"]["status"] == "running"
    assert by_name["sft-a"]["step"] == 4 and "loss" in by_name["sft-a"]["latest"]
    assert {"sft", "rft", "eval", "grpo"} <= set(data["methods"])
    only = client.get("/dashboard/api/runs?method=sft&task=gsm8k").json()["runs"]
    assert [r["name"] for r in only] == ["sft-b"]
    live = client.get("/dashboard/api/runs?status=running").json()["runs"]
    assert [r["name"] for r in live] == ["grpo-live"]
    page = client.get("/")
    assert page.status_code == 200 and "dashboard.js" in page.text


def test_run_page_of_a_real_sft_run(client):
    run = client.get("/dashboard/api/runs/sft-a").json()
    titles = dict((t, keys) for t, keys in run["groups"])
    assert "loss" in titles["loss"] and "eval/dev/pass@1" in titles["dev scores"]
    assert not any("n_items" in k for keys in titles.values() for k in keys)
    ckpts = {c["name"]: c for c in run["checkpoints"]}
    assert ckpts["step-4"]["scores"]["eval/dev/pass@1"] == 0.0 and "final" in ckpts
    assert "model:" in run["config"] and "lora:" in run["config"]
    assert run["lineage"]["lines"][0].startswith("run sft-a (sft)")


def test_groups_of_rl_and_eval_keys():
    rows = [metric_row(10, "grpo"), {"step": 0, "tiny/pass@2": 0.5, "tiny/mean": 0.3,
                                     "tiny/n_items": 3, "tiny/pass@2_stderr": 0.1}]
    found = dict(groups(rows))
    assert found["KL"] == ["approx_kl"] and found["reward"] == ["reward"]
    assert found["dev scores"] == ["eval/dev/pass@1", "eval/dev/mean"]
    assert found["unseen scores"] == ["eval/unseen/pass@1"]
    assert found["pass@k"] == ["tiny/pass@2"] and found["eval"] == ["tiny/mean"]


def test_metrics_after_step_returns_only_new_rows(client, runs):
    first = client.get("/dashboard/api/runs/grpo-live/metrics").json()["rows"]
    assert [r["step"] for r in first] == list(range(1, 31))
    assert client.get("/dashboard/api/runs/grpo-live/metrics?after_step=30").json()["rows"] == []
    with open(runs / "grpo-live" / "metrics.jsonl", "a") as f:
        f.write(json.dumps(metric_row(31, "grpo")) + "\n" + '{"step": 32, "lo')  # half a line
    new = client.get("/dashboard/api/runs/grpo-live/metrics?after_step=30").json()
    assert [r["step"] for r in new["rows"]] == [31] and new["last_step"] == 31
    with open(runs / "grpo-live" / "metrics.jsonl", "a") as f:
        f.write('ss": 1.0}\n')
    assert [r["step"] for r in client.get(
        "/dashboard/api/runs/grpo-live/metrics?after_step=31").json()["rows"]] == [32]


def test_samples_are_paged_with_grades(client):
    page = client.get("/dashboard/api/runs/ev/samples?offset=2&limit=3").json()
    assert page["total"] == 6 and len(page["rows"]) == 3
    assert {"grade", "passed", "details", "output"} <= set(page["rows"][0])
    synth = client.get("/dashboard/api/runs/sft-b/samples?offset=20&limit=10").json()
    assert synth["total"] == 25 and len(synth["rows"]) == 5
    assert synth["rows"][0]["details"]["sub_rewards"]["format"] == 1.0
    assert client.get("/dashboard/api/runs/sft-a/samples").json() == {
        "total": 0, "offset": 0, "rows": []}
    assert client.get("/dashboard/api/runs/ev/samples?limit=100000").status_code == 422


def test_compare_lays_runs_on_one_metric(client):
    data = client.get("/dashboard/api/compare?runs=sft-a,sft-b,rft-a&metric=loss").json()
    assert data["metric"] == "loss" and "reward" in data["keys"]
    assert data["series"]["sft-a"]["step"] == [1, 2, 3, 4]
    assert len(data["series"]["sft-b"]["loss"]) == 60
    assert client.get("/dashboard/api/compare?runs=sft-a,nope").status_code == 404


@pytest.mark.parametrize("path", [
    "/dashboard/api/runs/nope", "/dashboard/api/runs/..", "/dashboard/api/runs/%2e%2e",
    "/dashboard/api/runs/..%2fsft-a", "/dashboard/api/runs/.hidden/metrics",
    "/dashboard/api/runs/%2Fetc%2Fpasswd", "/dashboard/api/runs/sft-a%00/samples",
    "/dashboard/static/..%2f__init__.py", "/dashboard/static/index.py",
    "/dashboard/api/runs/sft-a/../../../etc/passwd"])
def test_bad_names_and_traversal_are_404(client, path):
    reply = client.get(path)
    assert reply.status_code == 404, (path, reply.text)
    assert "root:" not in reply.text


def test_index_of_300_runs_is_fast_and_rereads_nothing_unchanged(tmp_path):
    root = tmp_path / "runs"
    for i in range(300):
        synthetic_run(root, f"run-{i:03d}", method=("sft", "grpo", "dpo")[i % 3], steps=100,
                      seed=i % 5, samples=2)
    client = TestClient(create_dashboard_app(root))
    start = time.perf_counter()
    assert len(client.get("/dashboard/api/runs").json()["runs"]) == 300
    cold = time.perf_counter() - start
    index = RunIndex(root)
    index.summaries()
    reads = {n: t.reads for n, t in index._tails.items()}
    start = time.perf_counter()
    index.summaries()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    client.get("/dashboard/api/runs?method=grpo")
    served = time.perf_counter() - start
    print(f"300 runs: cold {cold:.3f} s, warm {warm:.4f} s, served {served:.3f} s")
    assert cold < 1.5 and warm < 0.5 and served < 0.5, (cold, warm, served)
    assert index.recomputed == 300 and {n: t.reads for n, t in index._tails.items()} == reads
    with open(root / "run-007" / "metrics.jsonl", "a") as f:
        f.write(json.dumps(metric_row(101, "grpo")) + "\n")
    summary = {s["name"]: s for s in index.summaries()}["run-007"]
    assert index.recomputed == 301 and summary["step"] == 101
    assert index._tails["run-007"].reads == reads["run-007"] + 1


def test_mount_on_another_app_and_keys(runs):
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"data": []}

    mount(app, runs, api_keys=["sk-dash"])
    client = TestClient(app, follow_redirects=False)
    assert client.get("/v1/models").status_code == 200
    assert client.get("/dashboard/api/runs").status_code == 401
    assert client.get("/").status_code == 303
    assert client.post("/dashboard/login", content="key=wrong").status_code == 401
    ok = client.post("/dashboard/login", content="key=sk-dash")
    assert ok.status_code == 303 and "httponly" in ok.headers["set-cookie"].lower()
    assert client.get("/dashboard/api/runs").status_code == 200  # the cookie
    bearer = TestClient(app).get("/dashboard/api/runs",
                                 headers={"authorization": "Bearer sk-dash"})
    assert bearer.status_code == 200


def test_check_refuses_other_hosts_without_a_key(runs, tmp_path, monkeypatch):
    monkeypatch.delenv("CORRAL_API_KEYS", raising=False)
    with pytest.raises(CorralError, match="without an API key"):
        check(DashboardOptions(runs=str(runs), host="0.0.0.0"))
    assert check(DashboardOptions(runs=str(runs))) == []
    monkeypatch.setenv("CORRAL_API_KEYS", "sk-1")
    assert check(DashboardOptions(runs=str(runs), host="0.0.0.0")) == ["sk-1"]
    with pytest.raises(CorralError, match="not a folder"):
        check(DashboardOptions(runs=str(tmp_path / "missing")))


def parser():
    from corral.cli import dashboard

    p = argparse.ArgumentParser()
    dashboard.register(p.add_subparsers(dest="command"))
    return p


def test_plot_writes_a_png_matplotlib_reads_back(runs, tmp_path, capsys):
    import matplotlib.image

    args = parser().parse_args(["plot", "sft-b", "--root", str(runs),
                                "--out", str(tmp_path / "c.png")])
    args.func(args)
    assert "wrote" in capsys.readouterr().out
    image = matplotlib.image.imread(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0 and image.shape[0] > 100
    args = parser().parse_args(["plot", str(runs / "rft-a"), "--out", str(tmp_path / "r.png")])
    args.func(args)
    assert matplotlib.image.imread(tmp_path / "r.png").shape[1] > 100
    with pytest.raises(CorralError, match="no run 'nope'"):
        bad = parser().parse_args(["plot", "nope", "--root", str(runs)])
        bad.func(bad)


def test_dashboard_flags_become_options():
    args = parser().parse_args(["dashboard", "somewhere", "--port", "9000"])
    from corral.cli.options import options

    assert options(DashboardOptions, args) == DashboardOptions(runs="somewhere", port=9000)


def test_a_symlinked_run_folder_opens(tmp_path):
    root = tmp_path / "runs"
    synthetic_run(tmp_path / "elsewhere", "kept", steps=5)
    root.mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere" / "kept")
    client = TestClient(create_dashboard_app(root))
    assert [r["name"] for r in client.get("/dashboard/api/runs").json()["runs"]] == ["linked"]
    assert len(client.get("/dashboard/api/runs/linked/metrics").json()["rows"]) == 5
