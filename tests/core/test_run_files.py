"""Run-directory files: atomic status/checkpoints, weights-only loading, RNG round trip, JSONL metrics tailing."""

from __future__ import annotations

import builtins
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from twm_core import checkpoint as ckpt
from twm_core.metrics import MetricsWriter, ScoresWriter, downsample, read_jsonl, truncate_after
from twm_core.run_dir import (
    RunDir,
    list_runs,
    new_run_id,
    pid_alive,
    read_json,
    read_status,
    status_is_stale,
    write_json_atomic,
    write_status,
)


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir(tmp_path / "run").create()


def small_payload(value: float) -> dict:
    return {"config": {"game": "Pong", "seed": 0}, "world_model": {"w": torch.full((3, 4), value)},
            "optimizers": {"wm": {"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 1e-4}]}},
            "shape": (3, 4), "note": None}


# --- checkpoints -------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip(run: RunDir) -> None:
    path = ckpt.save_checkpoint(run, 50_000, small_payload(1.5))
    assert path == run.ckpt_dir / "step_000050000.pt"
    data = ckpt.load_checkpoint(path)
    assert data["format_version"] == 1 and data["step"] == 50_000
    assert torch.equal(data["world_model"]["w"], torch.full((3, 4), 1.5))
    assert data["optimizers"]["wm"]["state"][0]["step"].item() == 5.0


def test_crash_mid_save_leaves_no_file_and_keeps_older_checkpoint(run: RunDir, monkeypatch: pytest.MonkeyPatch) -> None:
    old_path = ckpt.save_checkpoint(run, 100, small_payload(1.0))
    old_bytes = old_path.read_bytes()
    final = ckpt.checkpoint_path(run, 200)
    seen_during_write: list[bool] = []

    def crashing_save(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a zip archive")  # type: ignore[attr-defined]
        f.flush()  # type: ignore[attr-defined]
        seen_during_write.append(final.exists())
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(run, 200, small_payload(2.0))
    assert seen_during_write == [False]
    assert not final.exists()
    assert sorted(p.name for p in run.ckpt_dir.iterdir()) == [old_path.name]  # temp file cleaned up
    assert old_path.read_bytes() == old_bytes
    assert ckpt.latest_checkpoint(run) == (100, old_path)
    assert torch.equal(ckpt.load_checkpoint(old_path)["world_model"]["w"], torch.ones(3, 4))


def test_listing_ignores_temp_files_left_by_a_killed_process(run: RunDir) -> None:
    ckpt.save_checkpoint(run, 10, small_payload(0.0))
    ckpt.save_checkpoint(run, 2, small_payload(0.0))
    (run.ckpt_dir / ".step_000000030.pt.abc123.tmp").write_bytes(b"partial")
    (run.ckpt_dir / "notes.txt").write_text("x")
    assert [step for step, _ in ckpt.list_checkpoints(run)] == [2, 10]


@pytest.mark.parametrize("keep", [0, 16, 0.5, 0.99])
def test_truncated_or_garbage_checkpoint_raises_checkpoint_error(run: RunDir, keep: float) -> None:
    path = ckpt.save_checkpoint(run, 1, small_payload(3.0))
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep] or b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="not a loadable checkpoint"):
        ckpt.load_checkpoint(path)


def test_load_rejects_wrong_format_version_and_pickled_objects(run: RunDir) -> None:
    path = run.path / "v2.pt"
    torch.save({"format_version": 2, "step": 0}, path)
    with pytest.raises(ckpt.CheckpointError, match="format_version 2"):
        ckpt.load_checkpoint(path)
    torch.save({"format_version": 1, "step": 0, "obj": ValueError("pickled")}, path)  # plain pickle would run this
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        ckpt.load_checkpoint(run.path / "missing.pt")


@pytest.mark.parametrize("bad, where", [
    (object(), "payload['actor']['opt'][1]"),
    (np.float32(1.0), "payload['actor']['opt'][1]"),
    ({1.5: 2}, "payload['actor']['opt'][1]"),
    (np.zeros(3), "payload['actor']['opt'][1]"),
])
def test_payload_validation_names_the_offending_key(run: RunDir, bad: object, where: str) -> None:
    with pytest.raises(TypeError, match=re.escape(where)):
        ckpt.save_checkpoint(run, 5, {"actor": {"opt": [torch.zeros(1), bad]}})
    assert ckpt.list_checkpoints(run) == []
    with pytest.raises(ValueError, match="disagrees"):
        ckpt.save_checkpoint(run, 5, {"step": 6})


def test_resolve_and_prune(run: RunDir) -> None:
    for step in (10, 20, 30, 40, 50):
        ckpt.save_checkpoint(run, step, {})
    assert ckpt.resolve_checkpoint(run, "latest").name == "step_000000050.pt"
    assert ckpt.resolve_checkpoint(run, 20) == ckpt.resolve_checkpoint(run, "20") == ckpt.checkpoint_path(run, 20)
    with pytest.raises(ckpt.CheckpointNotFoundError, match="available: 10, 20, 30, 40, 50"):
        ckpt.resolve_checkpoint(run, 25)
    removed = ckpt.prune_checkpoints(run, keep_last=2, keep_steps={20})
    assert sorted(p.name for p in removed) == ["step_000000010.pt", "step_000000030.pt"]
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [20, 40, 50]
    with pytest.raises(ckpt.CheckpointNotFoundError, match="no checkpoints"):
        ckpt.resolve_checkpoint(RunDir(run.path / "empty"), "latest")


def draws(generator: torch.Generator) -> tuple:
    return (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist(),
            torch.rand(2, generator=generator).tolist())


def test_rng_round_trip_through_a_weights_only_checkpoint(run: RunDir) -> None:
    generator = torch.Generator().manual_seed(7)
    np.random.randn()  # leave a cached gaussian in numpy's state
    state = ckpt.capture_rng_state({"replay": generator})
    first = draws(generator)
    path = ckpt.save_checkpoint(run, 1, {"rng": state})
    draws(generator)  # move every RNG on
    restore_from = ckpt.load_checkpoint(path)["rng"]
    ckpt.restore_rng_state(restore_from, {"replay": generator})
    assert draws(generator) == first
    with pytest.raises(KeyError, match="other"):
        ckpt.restore_rng_state(restore_from, {"other": torch.Generator()})


# --- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_append_across_writers_then_truncate_tail_only(run: RunDir, monkeypatch: pytest.MonkeyPatch) -> None:
    with MetricsWriter(run.metrics_path) as writer:
        for step in (100, 200, 300):
            writer.write(step, {"wm/obs/recon_loss": torch.tensor(0.5), "env/steps": np.int64(step)})
    prefix = run.metrics_path.read_bytes()
    with MetricsWriter(run.metrics_path) as writer:  # the resumed process
        writer.write(400, {"wm/obs/recon_loss": 0.25})
        writer.write(500, {"wm/obs/recon_loss": 0.125})
    rows, _ = read_jsonl(run.metrics_path)
    assert [r["step"] for r in rows] == [100, 200, 300, 400, 500]
    assert rows[0]["wm/obs/recon_loss"] == 0.5 and rows[0]["env/steps"] == 100 and isinstance(rows[0]["time"], float)
    assert run.metrics_path.read_bytes().startswith(prefix)

    inode = run.metrics_path.stat().st_ino
    real_open = io.open

    def read_only_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        assert not set(mode) & set("wax+"), f"truncate_after must cut the file, not rewrite it (open mode {mode!r})"
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(io, "open", read_only_open)
        patch.setattr(builtins, "open", read_only_open)
        assert truncate_after(run.metrics_path, 300) == 2
    assert run.metrics_path.read_bytes() == prefix  # earlier bytes identical, same file (not rewritten)
    assert run.metrics_path.stat().st_ino == inode
    assert truncate_after(run.metrics_path, 300) == 0
    assert truncate_after(run.path / "missing.jsonl", 0) == 0


def test_read_jsonl_partial_last_line_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    assert read_jsonl(path, 7) == ([], 7)
    path.write_bytes(b'{"step": 1}\n{"step": 2}\n{"step": 3, "x"')
    rows, offset = read_jsonl(path)
    assert [r["step"] for r in rows] == [1, 2] and offset == len(b'{"step": 1}\n{"step": 2}\n')
    assert read_jsonl(path, offset) == ([], offset)
    with path.open("ab") as f:
        f.write(b': 1.0}\n{"step": 4}\n')
    rows, offset2 = read_jsonl(path, offset)
    assert rows == [{"step": 3, "x": 1.0}, {"step": 4}] and offset2 == path.stat().st_size
    assert read_jsonl(path, offset2 + 100)[0][0] == {"step": 1}  # past the end: the file was cut, start over


def test_writer_drops_a_torn_tail_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "wm/')  # the previous process died mid-line
    with MetricsWriter(path) as writer:
        writer.write(2, {"a": 1})
    rows, _ = read_jsonl(path)
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["a"] == 1


def test_non_finite_values_serialise_as_null(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as writer:
        row = writer.write(1, {"nan": float("nan"), "inf": torch.tensor(float("inf")), "ninf": np.float32(-np.inf),
                               "ok": torch.tensor([2.0], requires_grad=True).sum()})
        with pytest.raises(ValueError, match="one element"):
            writer.write(2, {"vec": torch.zeros(2)})
        with pytest.raises(ValueError, match="reserved"):
            writer.write(2, {"step": 1})
    line = path.read_text().strip()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == row and row["nan"] is None and row["inf"] is None and row["ninf"] is None
    assert row["ok"] == 2.0


def test_scores_writer(run: RunDir) -> None:
    with ScoresWriter(run.scores_path) as writer:
        writer.write(1000, "train", torch.tensor(-21.0), 812)
        with pytest.raises(ValueError, match="kind"):
            writer.write(1000, "test", 0.0, 1)
    (row,), _ = read_jsonl(run.scores_path)
    assert row["kind"] == "train" and row["score"] == -21.0 and row["length"] == 812 and row["step"] == 1000


def test_downsample() -> None:
    rows = list(range(1000))
    picked = downsample(rows, 10)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 999
    assert all(b - a in (111, 112) for a, b in zip(picked, picked[1:], strict=False))
    assert downsample(rows[:5], 10) == rows[:5]
    assert downsample(rows, 1) == [999]
    assert downsample(list(range(11)), 10)[-1] == 10 and len(set(downsample(list(range(11)), 10))) == 10
    with pytest.raises(ValueError):
        downsample(rows, 0)


# --- run directory, status -------------------------------------------------------------------------------------


def test_write_status_merges_and_replaces_atomically(run: RunDir, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_status(run) is None
    write_status(run, state="starting", pid=os.getpid(), step=0, total_steps=100)
    first = read_status(run)
    status = write_status(run, state="training", step=50)
    assert status == read_status(run)
    assert status["pid"] == os.getpid() and status["total_steps"] == 100 and status["step"] == 50
    assert status["updated"] >= first["updated"]
    assert [p.name for p in run.path.iterdir()] == ["status.json"]  # no temp file left behind

    before = run.status_path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("I/O error")))
    with pytest.raises(OSError):
        write_status(run, state="failed", error="boom")
    assert run.status_path.read_bytes() == before
    assert [p.name for p in run.path.iterdir()] == ["status.json"]
    with pytest.raises(ValueError, match="unknown run state"):
        write_status(run, state="sleeping")


def test_read_json(tmp_path: Path) -> None:
    assert read_json(tmp_path / "none.json") is None
    write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError):
        read_json(tmp_path / "bad.json", retries=1)


def test_pid_alive_current_zombie_and_dead(run: RunDir, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_alive(os.getpid())
    with monkeypatch.context() as patch:  # a process of another user: kill(pid, 0) is refused, yet it is alive
        patch.setattr(os, "kill", lambda pid, sig: (_ for _ in ()).throw(PermissionError(1, "Operation not permitted")))
        assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        if Path("/proc").is_dir():
            deadline = time.monotonic() + 30
            stat = Path(f"/proc/{child.pid}/stat")
            while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":  # exited, not yet reaped by us
                assert time.monotonic() < deadline, "child did not exit"
                time.sleep(0.01)
            assert not pid_alive(child.pid)
            write_status(run, state="training", pid=child.pid)
            assert status_is_stale(read_status(run))
    finally:
        child.wait()
    assert not pid_alive(child.pid)
    assert not status_is_stale({"state": "finished", "pid": child.pid})
    assert not status_is_stale({"state": "training", "pid": os.getpid()})
    assert status_is_stale({"state": "prefill"})


def test_new_run_id_format_and_uniqueness() -> None:
    now = datetime(2026, 11, 25, 20, 50, 12)
    run_id = new_run_id("Pong", "debug", 0, now=now)
    assert re.fullmatch(r"20261125-205012-pong-debug-s0-[0-9a-f]{4}", run_id), run_id
    other = new_run_id("ALE/MsPacman-v5", "atari100k", 3, now=now)
    assert other.startswith("20261125-205012-ale-mspacman-v5-atari100k-s3-")
    assert len({new_run_id("Pong", "debug", 0, now=now) for _ in range(20)}) >= 19  # 65536 suffixes


def test_list_runs_newest_first(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    assert list_runs(root) == []
    for i, name in enumerate(["b-old", "a-new", "c-mid"]):
        run = RunDir(root / name).create()
        write_json_atomic(run.config_path, {"i": i})
        os.utime(run.config_path, (1000 + [0, 20, 10][i],) * 2)
    RunDir(root / "no-config").create()
    (root / "stray.txt").write_text("x")
    write_status(RunDir(root / "b-old"), state="training")  # activity must not reorder runs
    assert [r.run_id for r in list_runs(root)] == ["a-new", "c-mid", "b-old"]


# --- tolerant reading ------------------------------------------------------------------------------------------------


def test_jsonl_bad_lines_are_skipped_and_counted_and_truncate_after_survives_them(tmp_path: Path) -> None:
    from twm_core.metrics import read_jsonl_page

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n\xff\xfe garbage\n[1]\n{"step": 2}\n' + b"[" * 5000 + b"\n" + b'{"step": 3, "x"')
    page = read_jsonl_page(path)
    assert [row["step"] for row in page.rows] == [1, 2] and page.skipped == 3
    assert page.next_offset == path.read_bytes().rfind(b"\n") + 1  # the torn tail waits, uncounted
    assert truncate_after(path, 1) == 2  # bad lines never start the cut; the step-2 row does (the torn tail goes too)
    assert [row["step"] for row in read_jsonl(path)[0]] == [1]


def test_evaluations_come_from_scores_and_ignore_bad_rows() -> None:
    from twm_core.metrics import Evaluation, evaluations_from_metrics, evaluations_from_scores

    rows = [{"step": 100, "kind": "eval", "score": 1.0}, {"step": 100, "kind": "eval", "score": 3.0},
            {"step": 100, "kind": "eval", "score": None}, {"step": "x", "kind": "eval", "score": 5.0},
            {"step": 200, "kind": "final_eval", "score": 4}, {"step": 150, "kind": "train", "score": 9.0}]
    assert evaluations_from_scores(rows) == [Evaluation("eval", 100, 2.0), Evaluation("final_eval", 200, 4.0)]
    assert evaluations_from_metrics([{"step": 100, "eval/score_mean": 2.0}, {"step": 5, "eval/score_mean": "x"}]) == [
        Evaluation("eval", 100, 2.0)]


def test_run_reader_names_bad_files_relative_to_the_runs_dir(tmp_path: Path) -> None:
    from twm_core.run_reader import RunReader

    run = RunDir(tmp_path / "runs" / "r1").create()
    write_json_atomic(run.config_path, {"env": 5, "seed": 0})
    run.metrics_path.symlink_to(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_text('{"step": 1, "password": "hunter2"}\n')
    run.scores_path.write_bytes(b'{"step": 1, "kind": "train", "score": 2.0}\nnot json\n')
    reader = RunReader(run)
    assert reader.identity().game is None and reader.identity().seed == 0
    assert reader.metrics() == [] and len(reader.scores()) == 1
    assert reader.damaged == ("r1/config.json: env is int, expected an object; "
                              "r1/metrics.jsonl: a symlink out of the run directory (not followed); "
                              "r1/scores.jsonl: 1 unreadable line skipped")
