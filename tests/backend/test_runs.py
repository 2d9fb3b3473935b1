"""Contract tests for the runs API against a real debug-preset run (the session fixture `debug_run`).

Expected values come from reading the run's files directly. `debug_run` is shared and read-only: tests that change a
run work on a copy of its small files (config, status, metrics, scores; checkpoints only where needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings
from twm_core.metrics import read_jsonl
from twm_core.run_dir import RUN_ID_MAX_LENGTH, RunDir, valid_run_id, write_status

Event = tuple[str, Any]
RESERVED = ("step", "time")


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def client(debug_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(runs_dir=debug_run.parent, device="cpu"))) as test_client:
        yield test_client


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


def copy_run(debug_run: Path, dest: Path, with_checkpoints: bool = False) -> RunDir:
    """Copy the run's small files (and optionally ckpt/) to `dest`; mtimes are kept (copy2)."""
    ignore = ["replay"] if with_checkpoints else ["replay", "ckpt"]
    shutil.copytree(debug_run, dest, ignore=shutil.ignore_patterns(*ignore))
    return RunDir(dest)


def file_rows(path: Path) -> list[dict[str, Any]]:
    rows, _ = read_jsonl(path)
    return rows


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def collect_events(client: TestClient, url: str, on_event: Callable[[Event], bool] | None = None,
                   timeout: float = 20.0) -> list[Event]:
    """Read an SSE stream until it ends (or `on_event` returns True: disconnect); fail if that takes > `timeout`.

    The stream is read on a thread so that a stream that never ends fails the test instead of hanging it.
    """
    events: list[Event] = []
    holder: dict[str, Any] = {}

    def consume() -> None:
        try:
            with client.stream("GET", url) as response:
                holder["response"] = response
                assert response.status_code == 200, response.read()
                assert response.headers["content-type"].startswith("text/event-stream")
                name, data = "message", []
                for line in response.iter_lines():
                    if line.startswith(":"):  # keep-alive comment
                        continue
                    if line.startswith("event:"):
                        name = line[len("event:"):].strip()
                    elif line.startswith("data:"):
                        data.append(line[len("data:"):].strip())
                    elif line == "" and data:
                        events.append((name, json.loads("\n".join(data))))
                        name, data = "message", []
                        if on_event is not None and on_event(events[-1]):
                            return
        except BaseException as exc:  # surfaced on the test's thread below
            holder["error"] = exc

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if "response" in holder:
            holder["response"].close()  # cancels the app's stream, so the client can shut down
        thread.join(5)
        pytest.fail(f"the event stream did not end within {timeout}s; events so far: {[e[0] for e in events]}")
    if "error" in holder:
        raise holder["error"]
    return events


# ------------------------------------------------------------------------------------------------ listing
def test_list_runs_reads_fields_from_the_run_files(client: TestClient, debug_run: Path) -> None:
    config = json.loads((debug_run / "config.json").read_text())
    status = json.loads((debug_run / "status.json").read_text())
    evals = [r["score"] for r in file_rows(debug_run / "scores.jsonl") if r["kind"] in ("eval", "final_eval")]

    response = client.get("/api/runs")
    assert response.status_code == 200
    [run] = [r for r in response.json()["runs"] if r["run_id"] == debug_run.name]
    assert (run["game"], run["preset"], run["seed"]) == (config["env"]["game"], config["preset"], config["seed"])
    assert run["state"] == status["state"] == "finished" and run["stale"] is False
    assert (run["step"], run["total_steps"]) == (status["step"], status["total_steps"]) == (200, 200)
    assert run["created"] == pytest.approx((debug_run / "config.json").stat().st_mtime)
    assert evals, "the fixture runs a final evaluation"
    assert run["latest_eval_score"] == pytest.approx(sum(evals) / len(evals))
    assert run["num_checkpoints"] == len(list((debug_run / "ckpt").glob("step_*.pt"))) == 2


def test_listing_is_newest_first_includes_cli_runs_and_reports_dead_processes(debug_run: Path,
                                                                             runs_root: Path) -> None:
    old = copy_run(debug_run, runs_root / "old-run")
    os.utime(old.config_path, (1_000_000, 1_000_000))
    stale = copy_run(debug_run, runs_root / "stale-run")
    write_status(stale, state="training", pid=dead_pid())
    bare = RunDir(runs_root / "cli-bare").create()  # a CLI run that has written only its config so far
    shutil.copy(debug_run / "config.json", bare.config_path)
    broken = copy_run(debug_run, runs_root / "broken-status")
    broken.status_path.write_text("{not json")
    (runs_root / "not-a-run").mkdir()
    (runs_root / "jobs.db").write_bytes(b"")
    for i, run in enumerate((stale, bare, broken)):  # distinct creation times, newest last
        os.utime(run.config_path, (2_000_000 + i, 2_000_000 + i))

    with TestClient(create_app(Settings(runs_dir=runs_root))) as client:
        response = client.get("/api/runs")
    assert response.status_code == 200
    listed = {r["run_id"]: r for r in response.json()["runs"]}
    assert list(listed) == ["broken-status", "cli-bare", "stale-run", "old-run"]
    assert listed["stale-run"]["state"] == "failed" and listed["stale-run"]["stale"] is True
    assert "gone" in listed["stale-run"]["error"]
    assert listed["cli-bare"]["state"] == "unknown" and listed["cli-bare"]["num_checkpoints"] == 0
    assert listed["cli-bare"]["latest_eval_score"] is None
    assert listed["broken-status"]["state"] == "unknown" and "unreadable" in listed["broken-status"]["error"]
    assert listed["old-run"]["state"] == "finished"


# ------------------------------------------------------------------------------------------------ details
def test_run_detail_matches_the_files(client: TestClient, debug_run: Path) -> None:
    rows = file_rows(debug_run / "metrics.jsonl")
    latest = {k: v for row in rows for k, v in row.items() if k not in RESERVED}
    response = client.get(f"/api/runs/{debug_run.name}")
    assert response.status_code == 200
    body = response.json()
    assert body["config"] == json.loads((debug_run / "config.json").read_text())
    assert body["status"] == json.loads((debug_run / "status.json").read_text())
    assert body["latest_metrics"] == latest and body["last_metrics_step"] == rows[-1]["step"]
    ckpts = sorted((debug_run / "ckpt").glob("step_*.pt"))
    assert [(c["step"], c["name"], c["size_bytes"]) for c in body["checkpoints"]] == [
        (int(p.stem.split("_")[1]), p.name, p.stat().st_size) for p in ckpts]
    scores = body["scores"]
    final = [r["score"] for r in file_rows(debug_run / "scores.jsonl") if r["kind"] == "final_eval"]
    assert scores["final_eval_mean"] == pytest.approx(sum(final) / len(final))
    assert scores["final_eval_step"] == 200 and scores["best_eval_mean"] == scores["final_eval_mean"]
    assert scores["final_eval_hns"] == pytest.approx(latest["eval/final_hns"])

    listing = client.get(f"/api/runs/{debug_run.name}/checkpoints").json()["checkpoints"]
    assert listing == body["checkpoints"]


def test_metrics_filter_by_keys_after_step_and_max_points(client: TestClient, debug_run: Path) -> None:
    rows = file_rows(debug_run / "metrics.jsonl")
    keys = ["wm/dec_loss", "perf/ram_mb"]
    expected = [{"step": r["step"], "time": r["time"], **{k: r[k] for k in keys if k in r}}
                for r in rows if any(k in r for k in keys)]
    assert 3 <= len(expected) < len(rows), "the debug run should have rows without these keys"
    url = f"/api/runs/{debug_run.name}/metrics"

    body = client.get(url, params={"keys": ",".join(keys)}).json()
    assert body["rows"] == expected and body["total_rows"] == len(expected) and body["keys"] == keys
    assert body["available_keys"] == sorted({k for r in rows for k in r} - set(RESERVED))
    assert body["last_step"] == rows[-1]["step"]

    after = client.get(url, params={"keys": ",".join(keys), "after_step": 150}).json()
    assert after["rows"] == [r for r in expected if r["step"] > 150]

    thinned = client.get(url, params={"keys": ",".join(keys), "max_points": 2}).json()
    assert thinned["rows"] == [expected[0], expected[-1]] and thinned["total_rows"] == len(expected)

    wm = client.get(url, params={"prefix": "wm/"}).json()
    assert wm["available_keys"] and all(k.startswith("wm/") for k in wm["available_keys"])
    assert wm["keys"] == wm["available_keys"]
    assert all(set(r) - set(RESERVED) <= set(wm["keys"]) for r in wm["rows"])
    assert len(wm["rows"]) == sum(any(k.startswith("wm/") for k in r) for r in rows)

    everything = client.get(url).json()
    assert everything["rows"] == rows  # no keys, no prefix: every row whole
    assert everything["next_offset"] == (debug_run / "metrics.jsonl").stat().st_size
    assert client.get(url, params={"offset": everything["next_offset"]}).json()["rows"] == []

    assert client.get(url, params={"keys": "no/such_key"}).json()["rows"] == []
    for bad in ({"max_points": 0}, {"max_points": 10_001}, {"after_step": "x"}):
        response = client.get(url, params=bad)
        assert response.status_code == 422 and response.json()["detail"]


def test_scores_by_kind(client: TestClient, debug_run: Path) -> None:
    rows = file_rows(debug_run / "scores.jsonl")
    url = f"/api/runs/{debug_run.name}/scores"
    body = client.get(url, params={"kind": "final_eval"}).json()
    assert [(r["step"], r["score"], r["length"]) for r in body["rows"]] == [
        (r["step"], r["score"], r["length"]) for r in rows if r["kind"] == "final_eval"]
    assert len(client.get(url).json()["rows"]) == len(rows)
    assert client.get(url, params={"kind": "train"}).json()["rows"] == [
        r for r in client.get(url).json()["rows"] if r["kind"] == "train"]
    assert client.get(url, params={"kind": "bogus"}).status_code == 422


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_runs_and_path_traversal_are_404(debug_run: Path, tmp_path: Path, runs_root: Path) -> None:
    copy_run(debug_run, tmp_path / "outside")  # a real run, but not under runs_dir
    copy_run(debug_run, runs_root / "inside")
    with TestClient(create_app(Settings(runs_dir=runs_root))) as client:
        for suffix in ("", "/metrics", "/scores", "/checkpoints", "/events"):
            response = client.get(f"/api/runs/no-such-run{suffix}")
            assert response.status_code == 404, suffix
            assert "no-such-run" in response.json()["detail"]
        for run_id in ("..%2Foutside", "%2E%2E", "..", "%2E", "inside%2F..%2F..%2Foutside", "%2Fetc",
                       "..%5Coutside", "inside%00"):
            for suffix in ("", "/metrics"):
                response = client.get(f"/api/runs/{run_id}{suffix}")
                assert response.status_code in (404, 422), (run_id, suffix, response.status_code)
                assert "detail" in response.json()
                assert "config" not in response.text and "rows" not in response.text
        assert client.get("/api/runs/inside").status_code == 200


def test_every_id_of_the_one_run_id_rule_is_served_alike(debug_run: Path, runs_root: Path) -> None:
    """An id `twm_core.run_dir.valid_run_id` accepts names a run for every endpoint (the runs API once capped ids
    at 200 characters and refused `..` inside one, while the model endpoints took them); one it refuses is 404."""
    long_id, dotted = "r" * RUN_ID_MAX_LENGTH, "a..b"
    assert valid_run_id(long_id) and valid_run_id(dotted) and not valid_run_id(long_id + "r")
    shutil.copytree(debug_run, runs_root / long_id)
    copy_run(debug_run, runs_root / dotted)
    with TestClient(create_app(Settings(runs_dir=runs_root, device="cpu"))) as client:
        assert {r["run_id"] for r in client.get("/api/runs").json()["runs"]} == {long_id, dotted}
        for run_id in (long_id, dotted):
            for suffix in ("", "/metrics", "/scores", "/checkpoints"):
                assert client.get(f"/api/runs/{run_id}{suffix}").status_code == 200, (run_id[:8], suffix)
            report = client.get("/api/report", params={"runs": run_id, "reps": 100})
            assert report.status_code == 200 and report.json()["games"][0]["runs"][0]["run_id"] == run_id
        imagined = client.post(f"/api/runs/{long_id}/imagine", json={"horizon": 2})
        assert imagined.status_code == 200 and imagined.json()["run_id"] == long_id
        no_checkpoints = client.post(f"/api/runs/{dotted}/imagine", json={"horizon": 2})  # found: it has no ckpt/
        assert no_checkpoints.status_code == 404 and "no checkpoints" in no_checkpoints.json()["detail"]
        (runs_root / (long_id[:-1] + "x")).mkdir()  # a directory without config.json is no run, for any endpoint
        for response in (client.get(f"/api/runs/{long_id[:-1]}x"), client.get(f"/api/runs/{long_id}r"),
                         client.post(f"/api/runs/{long_id[:-1]}x/imagine", json={}),
                         client.post(f"/api/runs/{long_id}r/imagine", json={})):
            assert response.status_code == 404 and len(response.json()["detail"]) < 400


def test_the_report_endpoint_survives_damaged_runs(debug_run: Path, runs_root: Path) -> None:
    for name in ("good", "bad-config", "bad-scores"):
        copy_run(debug_run, runs_root / name)
    (runs_root / "bad-config" / "config.json").write_bytes(b'{"env": {"game": "\xff"}}')
    with (runs_root / "bad-scores" / "scores.jsonl").open("ab") as f:
        f.write(b'garbage\n\xfe\xff\n{"kind": "final_eval", "score": 1}\n')
    with TestClient(create_app(Settings(runs_dir=runs_root))) as client:
        healthy = client.get("/api/report", params={"runs": "good", "reps": 100}).json()
        response = client.get("/api/report", params={"runs": "good,bad-config,bad-scores", "reps": 100})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["meta"]["skipped"] == [
        {"run_id": "bad-config", "reason": "damaged: bad-config/config.json: not valid UTF-8 (byte 18)"}]
    assert report["meta"]["damaged"] == [
        {"run_id": "bad-scores", "reason": "bad-scores/scores.jsonl: 3 unreadable lines skipped"}]
    [pong] = report["games"]
    assert [(r["run_id"], r["score"]) for r in pong["runs"]] == [
        ("bad-scores", healthy["games"][0]["runs"][0]["score"]), *[(r["run_id"], r["score"]) for r in
                                                                  healthy["games"][0]["runs"]]]
    assert str(runs_root) not in response.text


# ------------------------------------------------------------------------------------------------ events
def test_events_of_a_finished_run_send_its_rows_then_end(client: TestClient, debug_run: Path) -> None:
    rows = file_rows(debug_run / "metrics.jsonl")
    events = collect_events(client, f"/api/runs/{debug_run.name}/events")
    assert [data for name, data in events if name == "metrics"] == rows
    assert [name for name, _ in events][-2:] == ["status", "end"]
    assert events[-2][1]["state"] == "finished"
    assert events[-1][1] == {"state": "finished", "stale": False, "last_step": rows[-1]["step"]}

    later = collect_events(client, f"/api/runs/{debug_run.name}/events?after_step=150")
    assert [data for name, data in later if name == "metrics"] == [r for r in rows if r["step"] > 150]


def test_events_of_a_live_run_deliver_appended_rows_and_close(debug_run: Path, runs_root: Path) -> None:
    run = copy_run(debug_run, runs_root / "live")
    lines = run.metrics_path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 6
    run.metrics_path.write_bytes(b"".join(lines[:3]))
    write_status(run, state="training", pid=os.getpid(), step=60)
    writer_errors: list[BaseException] = []

    def train() -> None:  # stands in for the trainer: appends rows (one torn across two polls), then finishes
        try:
            with run.metrics_path.open("ab") as f:
                for line in lines[3:-1]:
                    f.write(line)
                    f.flush()
                    time.sleep(0.05)
                f.write(lines[-1][:20])
                f.flush()
                time.sleep(1.2)  # longer than a poll: the reader sees the partial line and must wait for the rest
                f.write(lines[-1][20:])
                f.flush()
            write_status(run, state="finished", step=200)
        except BaseException as exc:
            writer_errors.append(exc)

    writer = threading.Thread(target=train, daemon=True)

    def start_writer(event: Event) -> bool:
        if event[0] == "status" and writer.ident is None:
            writer.start()  # after the backlog: the rows it writes can only arrive by tailing the file
        return False

    with TestClient(create_app(Settings(runs_dir=runs_root))) as client:
        started = time.monotonic()
        events = collect_events(client, "/api/runs/live/events", on_event=start_writer)
        elapsed = time.monotonic() - started
    writer.join(5)
    assert not writer_errors
    assert [data for name, data in events if name == "metrics"] == [json.loads(line) for line in lines]
    states = [data["state"] for name, data in events if name == "status"]
    assert states[0] == "training" and states[-1] == "finished"
    assert events[-1] == ("end", {"state": "finished", "stale": False, "last_step": json.loads(lines[-1])["step"]})
    assert elapsed < 10


def test_events_end_for_a_dead_process_and_stop_on_disconnect(debug_run: Path, runs_root: Path) -> None:
    dead = copy_run(debug_run, runs_root / "dead")
    write_status(dead, state="training", pid=dead_pid())
    live = copy_run(debug_run, runs_root / "live")
    write_status(live, state="training", pid=os.getpid())
    with TestClient(create_app(Settings(runs_dir=runs_root))) as client:
        events = collect_events(client, "/api/runs/dead/events?after_step=1000000")
        assert [name for name, _ in events] == ["status", "end"]
        assert events[-1][1]["state"] == "failed" and events[-1][1]["stale"] is True

        # A live run's stream never ends by itself: the client leaves after the first status event.
        started = time.monotonic()
        events = collect_events(client, "/api/runs/live/events", on_event=lambda e: e[0] == "status", timeout=10)
        assert events[-1][0] == "status" and time.monotonic() - started < 5
        assert client.get("/api/runs").status_code == 200  # the server is still serving
