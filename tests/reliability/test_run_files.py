"""Run files under hostile conditions: every file of a run corrupted every way, symlinks out, deletions mid-request,
damaged status files in job and sweep listings, and a trainer killed, resumed and finished.

The promise: a run with any one bad file is listed as `damaged` (with a reason naming the file relative to the runs
directory), its own endpoints answer 200 or a 4xx JSON (never 500), and every other run's entry is byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from backend.jobs import JobManager
from backend.main import create_app
from backend.settings import Settings
from backend.sweeps import SweepManager
from twm_core import checkpoint as ckpt
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, RunState, read_run_status, read_status, write_status
from twm_core.trainer import Trainer

SECRET = "root:x:0:0:SECRET-OUTSIDE-THE-RUNS-DIR"
ENDPOINTS = ("", "/metrics", "/scores", "/checkpoints")


# ------------------------------------------------------------------------------------------------ helpers
def events(client: TestClient, url: str, limit: int = 400) -> tuple[int, list[tuple[str, Any]]]:
    """(status code, events) of an SSE stream, read until `end`, or the first `status` of a run that is not final."""
    found: list[tuple[str, Any]] = []
    with client.stream("GET", url) as response:
        if response.status_code != 200:
            return response.status_code, [("error", json.loads(response.read()))]
        name, data = "message", []
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
            elif line == "" and data:
                found.append((name, json.loads("\n".join(data))))
                name, data = "message", []
                if found[-1][0] == "end" or len(found) >= limit:
                    break
                if found[-1][0] == "status" and found[-1][1].get("state") not in ("finished", "failed", "cancelled"):
                    break
    return 200, found


def listing(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/runs")
    assert response.status_code == 200, response.text
    return {run["run_id"]: run for run in response.json()["runs"]}


def assert_no_500(response: Any, what: str) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, (what, response.status_code,
                                                                              response.text[:500])
    if response.status_code != 200:
        assert "detail" in response.json(), what


# ------------------------------------------------------------------------------------------------ the matrix
@pytest.fixture(scope="module")
def arena(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two healthy runs and a victim (a full copy, checkpoints and replay included), served by one app."""
    base = tmp_path_factory.mktemp("arena")
    root = base / "runs"
    root.mkdir()
    for name in ("good-a", "good-b"):
        shutil.copytree(debug_run, root / name, ignore=shutil.ignore_patterns("replay", "ckpt"))
    shutil.copytree(debug_run, root / "victim")
    pristine = base / "pristine"
    shutil.copytree(debug_run, pristine)
    secret = base / "passwd"
    secret.write_text(SECRET + "\n")
    with TestClient(create_app(Settings(runs_dir=root, device="cpu"))) as client:
        before = listing(client)
        assert before["victim"]["damaged"] is None and before["good-a"]["damaged"] is None
        yield {"root": root, "pristine": pristine, "secret": secret, "client": client, "before": before}


def _first_chunk(run: Path) -> str:
    return str(sorted((run / "replay").iterdir())[0].relative_to(run))


FILES = {  # kind -> path inside the run (a callable for names only known at run time)
    "config": "config.json", "status": "status.json", "metrics": "metrics.jsonl", "scores": "scores.jsonl",
    "checkpoint": "ckpt/step_000000200.pt", "replay": _first_chunk,
}
JSONL_WRONG = (b'[1, 2]\n5\n"row"\n{"step": "7"}\n{"step": 1e400}\n{"step": true}\n{"no_step": 1}\n'
               b'{"step": 5, "deep": ' + b"[" * 40 + b"]" * 40 + b"}\n")


def _wrong_types(kind: str, original: bytes) -> bytes:
    if kind == "config":
        return json.dumps({**json.loads(original), "env": 5, "train": [1], "seed": "zero", "preset": 7}).encode()
    if kind == "status":
        return json.dumps({"state": ["training"], "pid": "12", "step": {"a": 1}, "total_steps": "x", "error": 5,
                           "updated": "now", "phase": [1]}).encode()
    if kind in ("metrics", "scores"):
        return original + JSONL_WRONG
    return b"[1, 2, 3]"


def _non_finite(kind: str, original: bytes) -> bytes:
    if kind in ("config", "status"):
        obj = json.loads(original)
        obj.update({"seed": float("nan")} if kind == "config" else {"step": float("inf"), "updated": float("nan")})
        return json.dumps(obj).encode()  # NaN / Infinity tokens: Python's json reads them
    if kind in ("metrics", "scores"):
        return original + b'{"step": 999, "x": NaN, "score": Infinity, "kind": "eval"}\n{"step": NaN}\n'
    return original


def _invalid_utf8(kind: str, original: bytes) -> bytes:
    if kind in ("metrics", "scores"):
        lines = original.splitlines(keepends=True)
        return b"".join(lines[:2]) + b'{"step": 3, "k\xff\xfe": 1}\n\xc3\x28\n' + b"".join(lines[2:])
    return original[:10] + b"\xff\xfe\xfd" + original[10:]


CORRUPTIONS: dict[str, Callable[[str, bytes], bytes | None]] = {
    "garbage": lambda kind, data: os.urandom(3000) + b"\n\x00\x01garbage\n",
    "truncated": lambda kind, data: data[: len(data) // 2],
    "invalid_utf8": _invalid_utf8,
    "wrong_types": _wrong_types,
    "non_finite": _non_finite,
    "empty": lambda kind, data: b"",
    "directory": lambda kind, data: None,
    "dangling_symlink": lambda kind, data: None,
    "symlink_out": lambda kind, data: None,
}
# What a listing can see. Checkpoint and replay *contents* are only read when a model is loaded (inspect
# endpoints, resume); a torn JSONL tail is indistinguishable from a line being written right now, and an empty log
# from a run that has not logged yet.
NOT_DETECTABLE = {("metrics", "truncated"), ("scores", "truncated"), ("metrics", "empty"), ("scores", "empty")} | {
    (kind, how) for kind in ("checkpoint", "replay")
    for how in ("garbage", "truncated", "invalid_utf8", "wrong_types", "non_finite", "empty")} | {
    ("replay", how) for how in ("directory", "dangling_symlink", "symlink_out")}


def corrupt(path: Path, kind: str, how: str, secret: Path) -> None:
    original = path.read_bytes()
    path.unlink()
    if how == "directory":
        path.mkdir()
        (path / "inner").write_text("{}")
    elif how == "dangling_symlink":
        path.symlink_to(path.parent / "no-such-target")
    elif how == "symlink_out":
        path.symlink_to(secret)
    else:
        data = CORRUPTIONS[how](kind, original)
        assert data is not None
        path.write_bytes(data)


def restore(path: Path, pristine: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    shutil.copy2(pristine, path)


@pytest.mark.parametrize("how", list(CORRUPTIONS))
@pytest.mark.parametrize("kind", list(FILES))
def test_one_corrupted_file_damages_only_its_run(arena: dict[str, Any], kind: str, how: str) -> None:
    client, root, before = arena["client"], arena["root"], arena["before"]
    spec = FILES[kind]
    relative = spec(arena["pristine"]) if callable(spec) else spec
    path = root / "victim" / relative
    corrupt(path, kind, how, arena["secret"])
    try:
        after = listing(client)
        for run_id in ("good-a", "good-b"):
            assert json.dumps(after[run_id]) == json.dumps(before[run_id]), f"{run_id} changed"
        victim = after["victim"]
        if (kind, how) not in NOT_DETECTABLE:
            assert victim["damaged"], f"{kind}/{how} should mark the run damaged: {victim}"
            named = "ckpt/" if kind == "checkpoint" else relative
            assert f"victim/{named}" in victim["damaged"], victim["damaged"]
        texts = [json.dumps(victim)]
        for suffix in ENDPOINTS:
            response = client.get(f"/api/runs/victim{suffix}")
            assert_no_500(response, f"{kind}/{how} {suffix or 'detail'}")
            texts.append(response.text)
        code, streamed = events(client, "/api/runs/victim/events")
        assert code == 200 or 400 <= code < 500
        assert streamed and streamed[-1][0] in ("end", "status"), streamed[-3:]
        texts.append(json.dumps(streamed))
        for text in texts:
            assert SECRET not in text, "a symlink out of the run was followed"
            assert str(root) not in text, "an absolute server path leaked into a response"
    finally:
        restore(path, arena["pristine"] / relative)
    assert listing(client)["victim"]["damaged"] is None


# ------------------------------------------------------------------------------------------------ symlinks, deletion
def test_run_dir_symlinked_out_of_the_runs_dir_is_neither_listed_nor_served(debug_run: Path, tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    shutil.copytree(debug_run, elsewhere, ignore=shutil.ignore_patterns("replay", "ckpt"))
    (root / "escaped").symlink_to(elsewhere, target_is_directory=True)
    with TestClient(create_app(Settings(runs_dir=root, device="cpu"))) as client:
        assert listing(client) == {}
        for suffix in (*ENDPOINTS, "/events"):
            response = client.get(f"/api/runs/escaped{suffix}")
            assert response.status_code == 404, suffix
            assert str(tmp_path) not in response.json()["detail"]


def test_deleted_run_ends_its_event_stream_and_racing_requests_are_404(debug_run: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from backend import runs

    root = tmp_path / "runs"
    shutil.copytree(debug_run, root / "doomed", ignore=shutil.ignore_patterns("replay", "ckpt"))
    write_status(RunDir(root / "doomed"), state="training", pid=os.getpid())  # live: its stream would go on forever
    with TestClient(create_app(Settings(runs_dir=root, device="cpu", events_poll_interval=0.05))) as client:
        seen: list[tuple[str, Any]] = []
        with client.stream("GET", "/api/runs/doomed/events") as response:
            name = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    name = line[len("event:"):].strip()
                elif line.startswith("data:"):
                    seen.append((name, json.loads(line[len("data:"):])))
                    if name == "status":
                        shutil.rmtree(root / "doomed")
                    if name == "end" or len(seen) > 1000:
                        break
        assert seen[-1] == ("end", {"state": "deleted", "stale": False, "last_step": seen[-3][1]["step"]})

        shutil.copytree(debug_run, root / "racing", ignore=shutil.ignore_patterns("replay", "ckpt"))
        resolve = runs.resolve_run

        def resolve_then_delete(runs_dir: Path, run_id: str) -> RunDir:
            run = resolve(runs_dir, run_id)
            shutil.rmtree(run.path)  # deleted between the lookup and the reading
            return run

        monkeypatch.setattr(runs, "resolve_run", resolve_then_delete)
        for suffix in ("", "/metrics", "/scores"):
            shutil.copytree(debug_run, root / "racing", ignore=shutil.ignore_patterns("replay", "ckpt"),
                            dirs_exist_ok=True)
            response = client.get(f"/api/runs/racing{suffix}")
            assert response.status_code == 404, (suffix, response.text)
            assert response.json()["detail"] == "no run 'racing'"


# ------------------------------------------------------------------------------------------------ jobs and sweeps
BAD_STATUSES = [b"{not json", b"[1, 2]", b"\xff\xfe", b"",
                json.dumps({"state": ["training"], "step": "x", "total_steps": {"a": 1}, "phase": 3}).encode(),
                json.dumps({"state": "training", "pid": "me", "step": 1e400}).encode()]


def test_bad_status_files_do_not_break_job_or_sweep_listings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = JobManager(Settings(runs_dir=tmp_path / "runs", device="cpu"))
    monkeypatch.setattr(manager, "_start_queued", lambda: None)  # queue only: no training process is needed
    sweep = SweepManager(manager).submit(["Pong"], list(range(len(BAD_STATUSES))), preset="debug", steps=120)
    for job, data in zip(sorted(sweep.jobs, key=lambda j: j.seed), BAD_STATUSES, strict=True):
        RunDir(Path(job.run_dir)).create().status_path.write_bytes(data)
    jobs = manager.list_jobs()
    assert len(jobs) == len(BAD_STATUSES)
    for job in jobs:
        assert type(job.progress.step) is int and type(job.progress.total_steps) is int
        assert job.progress.phase is None and job.progress.run_state in (None, "training")
    listed = SweepManager(manager).list_sweeps()
    assert [s.sweep_id for s in listed] == [sweep.sweep_id] and listed[0].progress == 0.0


def test_status_reader_types_every_field_and_write_status_replaces_a_damaged_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run").create()
    for data in BAD_STATUSES:
        run.status_path.write_bytes(data)
        status = read_run_status(run)
        assert status is not None and status.problems and status.state in (RunState.UNKNOWN, RunState.FAILED)
        assert all(str(tmp_path) not in problem for problem in status.problems)
        write_status(run, state="training", pid=os.getpid(), step=5)  # the trainer's next write must not crash
        assert read_status(run)["step"] == 5
    run.status_path.unlink()
    run.status_path.mkdir()
    status = read_run_status(run)
    assert status is not None and status.state is RunState.UNKNOWN
    assert status.problems == ["run/status.json: is a directory, not a file"]


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_listing_skips_directories_and_dangling_links(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run").create()
    good = ckpt.save_checkpoint(run, 300, {"w": torch.zeros(2)})
    (run.ckpt_dir / "step_000000100.pt").mkdir()
    (run.ckpt_dir / "step_000000200.pt").symlink_to(run.ckpt_dir / "gone.pt")
    (run.ckpt_dir / "step_000000400.pt").symlink_to(tmp_path / "outside.pt")
    (tmp_path / "outside.pt").write_bytes(good.read_bytes())
    assert ckpt.list_checkpoints(run) == [(300, good)]
    assert ckpt.prune_checkpoints(run, keep_last=1) == []  # a directory named like a checkpoint is never unlinked
    found, problems = ckpt.scan_checkpoints(run)
    assert [c.step for c in found] == [300]
    assert sorted(problems) == ["run/ckpt/step_000000100.pt: not a regular file",
                                "run/ckpt/step_000000200.pt: a dangling symlink",
                                "run/ckpt/step_000000400.pt: a symlink out of the run directory (not followed)"]


# ------------------------------------------------------------------------------------------------ trainer hygiene
@pytest.mark.slow
def test_killed_resumed_run_cleans_temporaries_checkpoints_once_and_shows_no_stale_error(tmp_path: Path) -> None:
    cfg = make_config("debug", "Pong", seed=0, overrides={
        "train.total_steps": 300, "train.pretrain_budget": 5000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 0, "train.checkpoint_every": 100, "train.keep_checkpoints": 5})
    run = RunDir(tmp_path / "run")

    def stop_past_220(step: int, total: int, phase: str) -> None:
        if step >= 220:
            trainer._request_stop(signal.SIGTERM, None)

    trainer = Trainer(cfg, run, "cpu", on_progress=stop_past_220)
    trainer.run()
    assert trainer.stopped
    steps = [step for step, _ in ckpt.list_checkpoints(run)]
    assert 200 in steps and steps[-1] >= 220
    for step, path in ckpt.list_checkpoints(run):
        counters = ckpt.load_checkpoint(path)["counters"]
        assert counters["last_checkpoint"] == step, "a checkpoint must record itself as the last one"
    # What a SIGKILL after the step-200 checkpoint leaves: no later checkpoint, half-written temporaries, and the
    # job manager's verdict in status.json.
    ckpt.checkpoint_path(run, steps[-1]).unlink()
    leftovers = [run.ckpt_dir / ".step_000000300.pt.k1ll.tmp", run.path / ".status.json.x9z.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    write_status(run, state="failed", error="killed by signal SIGKILL\n--- last lines ---")

    resumed = Trainer.resume(run, "cpu")
    resumed.run()
    assert not any(path.exists() for path in leftovers), "stale temporary files survived the resume"
    steps = [step for step, _ in ckpt.list_checkpoints(run)]
    assert 201 not in steps, f"the resume wrote an extra checkpoint one step after its start: {steps}"
    assert steps[-2:] == [200, 300]
    status = read_status(run)
    assert status["state"] == "finished" and status.get("error") is None, status
