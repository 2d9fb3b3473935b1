"""ReplayBuffer: row alignment, frame-stack rebuilding, balanced sampling (Eq. 6, Fig. 2), persistence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from twm_core.replay import ReplayBuffer

F, S = 4, 8  # small frames keep the tests fast; the rebuild rule does not depend on the size


def frame(frame_id: int) -> np.ndarray:
    """A frame whose pixels encode its id, so any misaligned read is visible."""
    f = np.zeros((S, S), dtype=np.uint8)
    f[0, 0], f[0, 1], f[1:] = frame_id % 256, frame_id // 256, frame_id % 7
    return f


def decode(frames: torch.Tensor) -> np.ndarray:
    """(..., S, S) uint8 -> (...) frame ids."""
    f = frames.numpy().astype(np.int64)
    return f[..., 0, 0] + 256 * f[..., 0, 1]


@dataclass
class Stream:
    """What an env with frame stacking and auto-reset hands to the buffer, plus the expected rows."""

    stacks: list[list[int]] = field(default_factory=list)  # frame ids of o_0 .. o_size
    resets: list[bool] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)  # true final frames the buffer must never show


def make_stream(steps: int, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    s, next_id = Stream(), 2
    stack = [1] * F
    s.stacks.append(stack), s.resets.append(True)
    for _ in range(steps):
        term, trunc = bool(rng.random() < 0.08), bool(rng.random() < 0.03)
        refill = term or trunc or bool(rng.random() < 0.03)  # also refills without a done
        new = next_id
        next_id += 1
        if term or trunc:  # auto-reset: the final frame `new` is thrown away, the reset frame follows
            s.discarded.append(new)
            new, next_id = next_id, next_id + 1
        stack = [new] * F if refill else stack[1:] + [new]
        s.actions.append(int(rng.integers(6))), s.rewards.append(float(np.tanh(rng.normal())))
        s.terminated.append(term), s.truncated.append(trunc)
        s.stacks.append(stack), s.resets.append(refill)
    return s


def obs_of(stack: list[int]) -> np.ndarray:
    return np.stack([frame(i) for i in stack])  # (F, S, S)


def fill(stream: Stream, rows: int | None = None, capacity: int = 400, **kwargs) -> ReplayBuffer:
    rows = len(stream.actions) if rows is None else rows
    buf = ReplayBuffer(capacity, frame_stack=F, frame_size=S, **kwargs)
    buf.reset_obs(obs_of(stream.stacks[0]), stack_reset=True)
    for i in range(rows):
        buf.add(stream.actions[i], stream.rewards[i], stream.terminated[i], stream.truncated[i],
                obs_of(stream.stacks[i + 1]), stream.resets[i + 1])
    return buf


def test_hand_written_episode_boundary() -> None:
    """Frames 1,2,3, a done (final frame 4 discarded), reset frame 5, then 6: values written out by hand."""
    buf = ReplayBuffer(10, frame_stack=4, frame_size=S)
    buf.reset_obs(obs_of([1, 1, 1, 1]), stack_reset=True)
    buf.add(3, 0.5, False, False, obs_of([1, 1, 1, 2]), False)
    buf.add(4, -0.5, False, False, obs_of([1, 1, 2, 3]), False)
    buf.add(5, 1.0, True, False, obs_of([5, 5, 5, 5]), True)
    buf.add(2, 0.0, False, False, obs_of([5, 5, 5, 6]), False)
    assert buf.size == 4
    assert decode(buf.current_obs()).tolist() == [5, 5, 5, 6]
    batch = buf.get_data(torch.tensor([0, 2]), sequence_length=2, prefix=1, return_next_obs=True)
    assert batch.obs.shape == (2, 4, 4, S, S) and batch.actions.shape == (2, 3)
    assert decode(batch.obs).tolist() == [
        [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 2, 3]],  # context repeats row 0
        [[1, 1, 1, 2], [1, 1, 2, 3], [5, 5, 5, 5], [5, 5, 5, 6]],  # after the done: the reset obs
    ]
    assert batch.actions.tolist() == [[0, 3, 4], [4, 5, 2]]  # context before row 0 is a noop
    assert batch.rewards.tolist() == [[0.0, 0.5, -0.5], [-0.5, 1.0, 0.0]]
    assert batch.terminated.tolist() == [[False, False, False], [False, True, False]]
    assert batch.truncated.dtype == torch.bool and not batch.truncated.any()


def test_rebuilt_stacks_equal_the_stacks_passed_in() -> None:
    stream = make_stream(300, seed=0)
    buf = fill(stream)
    ids = decode(buf.get_obs(torch.arange(buf.size + 1)))  # (size+1, F)
    assert ids.tolist() == stream.stacks
    assert not set(ids.ravel().tolist()) & set(stream.discarded)


@pytest.mark.parametrize("prefix", [0, 1, 3])
def test_get_data_alignment_on_a_stream(prefix: int) -> None:
    stream = make_stream(200, seed=1)
    buf, length = fill(stream), 5
    starts = torch.arange(buf.num_valid_starts(length))
    batch = buf.get_data(starts, length, prefix=prefix, return_next_obs=True)
    assert batch.obs.shape == (len(starts), prefix + length + 1, F, S, S)
    for s in starts.tolist():
        rows = [max(t, 0) for t in range(s - prefix, s + length)]
        assert decode(batch.obs[s]).tolist() == [stream.stacks[t] for t in rows + [s + length]]
        fill_zero = [t < 0 for t in range(s - prefix, s + length)]
        pairs = list(zip(rows, fill_zero, strict=True))
        assert batch.actions[s].tolist() == [0 if z else stream.actions[t] for t, z in pairs]
        expected_rewards = [0.0 if z else stream.rewards[t] for t, z in pairs]
        np.testing.assert_allclose(batch.rewards[s].numpy(), expected_rewards, rtol=1e-6)
        assert batch.terminated[s].tolist() == [stream.terminated[t] for t in rows]
        assert batch.truncated[s].tolist() == [stream.truncated[t] for t in rows]
    no_next = buf.get_data(starts[:3], length, prefix=prefix, return_next_obs=False)
    assert no_next.obs.shape[1] == prefix + length


def test_stack_rule_violations_raise() -> None:
    buf = ReplayBuffer(10, frame_stack=F, frame_size=S)
    with pytest.raises(ValueError, match="stack_reset"):
        buf.reset_obs(obs_of([1, 1, 1, 1]), stack_reset=False)
    with pytest.raises(ValueError, match="reset_obs"):
        buf.add(0, 0.0, False, False, obs_of([1, 1, 1, 2]), False)
    with pytest.raises(ValueError, match="stack_reset"):  # zero padding instead of copies of the reset frame
        buf.reset_obs(obs_of([0, 0, 0, 1]), stack_reset=True)
    buf.reset_obs(obs_of([1, 1, 1, 1]), stack_reset=True)
    with pytest.raises(ValueError, match="frame-stack"):
        buf.add(0, 0.0, False, False, obs_of([1, 1, 2, 3]), False)  # skipped a frame
    with pytest.raises(ValueError, match="uint8"):
        buf.add(0, 0.0, False, False, obs_of([1, 1, 1, 2]).astype(np.float32), False)
    assert buf.size == 0


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)
    with pytest.raises(ValueError, match="temperature"):
        ReplayBuffer(10, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        ReplayBuffer(10, temperature=float("nan"))
    buf = fill(make_stream(30, seed=2), capacity=30)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample_indices(7, 4, g)  # 7·4 = 28 > 27 valid starts (the reference's rule)
    with pytest.raises(ValueError, match="capacity"):
        buf.add(0, 0.0, False, False, obs_of([1] * F), True)
    with pytest.raises(ValueError, match="size"):
        buf.get_obs(torch.tensor([31]))


def test_sampling_without_replacement_counts_starts_only() -> None:
    buf, length, batch = fill(make_stream(30, seed=3), capacity=50), 4, 6
    valid = buf.num_valid_starts(length)
    assert valid == 27  # starts 0..26: s + ℓ - 1 < size = 30
    g = torch.Generator().manual_seed(1)
    drawn = [buf.sample_indices(batch, length, g) for _ in range(300)]
    assert all(len(set(d.tolist())) == batch for d in drawn)  # distinct within a batch
    flat = torch.cat(drawn)
    assert flat.min() == 0 and flat.max() == valid - 1  # every valid start is reachable, nothing beyond
    expected = torch.bincount(flat, minlength=buf.size)
    assert torch.equal(buf.visits, expected)  # only the starts, not the rest of each window
    assert buf.visits.sum() == 300 * batch


def _grow_and_sample(temperature: float, steps: int = 2000, batch: int = 100, every: float = 0.76,
                     seed: int = 0) -> tuple[ReplayBuffer, list[int]]:
    """Add one step at a time; ~1.316 samples of `batch` starts per step, as the reference (§3 step 4)."""
    buf = ReplayBuffer(steps, frame_stack=1, frame_size=1, temperature=temperature)
    obs = np.zeros((1, 1, 1), dtype=np.uint8)
    buf.reset_obs(obs, stack_reset=True)
    g, counter, sizes = torch.Generator().manual_seed(seed), 0.0, []
    for _ in range(steps):
        buf.add(0, 0.0, False, False, obs, False)
        if buf.size > batch:
            counter += 1
            while counter >= every:
                counter -= every
                buf.sample_indices(batch, 1, g)
                sizes.append(buf.size)
    return buf, sizes


def test_balanced_sampling_figure_2() -> None:
    """Paper Fig. 2: with τ=20 roughly half of the training time goes to each half of the data; uniform
    sampling spends far more on the first half.

    Tolerances: for ℓ=1 uniform sampling the expected visits of entry i are Σ_{draws at size t > i} B/t,
    computed below independently of the buffer; its first-half share is about 0.84. With ~250k draws the
    simulated share has a standard deviation of ~0.001, so ±0.01 is a wide bound. At the paper's visits/τ
    ratio (~125 visits per entry: 100 starts x 1.316 updates per env step) τ=20 gives a first-half share of
    about 0.57 for any buffer length (checked for 2k-10k steps and several seeds, spread < 0.005); the band
    [0.45, 0.65] says "roughly half" and excludes uniform sampling by a wide margin.
    """
    balanced, _ = _grow_and_sample(20.0)
    uniform, sizes = _grow_and_sample(math.inf)
    half, tail = 1000, 200
    share = {name: buf.visits[:half].sum().item() / buf.visits.sum().item()
             for name, buf in (("balanced", balanced), ("uniform", uniform))}
    expected_visits = np.zeros(2000)
    for t in sizes:
        expected_visits[:t] += 100 / t
    expected_share = expected_visits[:half].sum() / expected_visits.sum()
    assert abs(share["uniform"] - expected_share) < 0.01
    assert share["uniform"] > 0.8
    assert 0.45 < share["balanced"] < 0.65
    newest = {name: buf.visits[-tail:].sum().item() for name, buf in (("b", balanced), ("u", uniform))}
    assert newest["b"] > 5 * newest["u"]  # the newest 10% are oversampled
    assert balanced.visit_entropy() > uniform.visit_entropy()


def test_uniform_temperature_is_uniform_on_a_static_buffer() -> None:
    """Counts over a static buffer of 50 entries: chi-square with 49 dof lies in [15, 112] with probability
    > 1 - 2e-6 (Wilson-Hilferty at z = ±4.75; sampling without replacement within a draw only narrows it).
    Balanced sampling (τ=20) evens the counts out far below what independent draws can (chi-square < 5)."""
    stats = {}
    for tau in (math.inf, 20.0):
        buf = ReplayBuffer(50, frame_stack=1, frame_size=1, temperature=tau)
        g = torch.Generator().manual_seed(3)
        obs = np.zeros((1, 1, 1), dtype=np.uint8)
        buf.reset_obs(obs, stack_reset=True)
        for _ in range(50):
            buf.add(0, 0.0, False, False, obs, False)
        for _ in range(2000):
            buf.sample_indices(5, 1, g)
        counts = buf.visits.double()
        expected = 2000 * 5 / 50
        stats[tau] = ((counts - expected) ** 2 / expected).sum().item()
    assert 15 < stats[math.inf] < 112
    assert stats[20.0] < 5


def test_visit_probs_follow_equation_6() -> None:
    buf = fill(make_stream(20, seed=4), capacity=20)
    visits = torch.tensor([0, 5, 40, 3, 100] * 4)
    buf.load_state_dict({"size": 20, "visits": visits})
    logits = -visits.numpy() / 20.0
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(buf.visit_probs(1).numpy(), expected, rtol=1e-5)
    assert buf.visit_probs(4).shape == (17,)
    uniform = fill(make_stream(20, seed=4), capacity=20, temperature=math.inf)
    uniform.load_state_dict({"size": 20, "visits": visits})
    np.testing.assert_allclose(uniform.visit_probs(1).numpy(), np.full(20, 1 / 20), rtol=1e-6)


def test_same_seed_same_indices() -> None:
    stream = make_stream(120, seed=5)
    a, b = fill(stream), fill(stream)
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(5):
        assert torch.equal(a.sample_indices(4, 8, ga), b.sample_indices(4, 8, gb))
    assert torch.equal(a.sample_obs(6, ga), b.sample_obs(6, gb))
    assert [x.tolist() for x in a.generate_uniform_indices(3, 8, ga)] == \
        [x.tolist() for x in b.generate_uniform_indices(3, 8, gb)]
    other = a.sample_indices(4, 8, torch.Generator().manual_seed(8))
    assert not torch.equal(other, b.sample_indices(4, 8, torch.Generator().manual_seed(7)))


def test_generate_uniform_indices_windows() -> None:
    buf, length = fill(make_stream(100, seed=6)), 8
    before = buf.visits.clone()
    batches = buf.generate_uniform_indices(5, length, torch.Generator().manual_seed(0))
    starts = torch.cat(batches).sort().values
    offset = int(starts[0])
    assert 0 <= offset < length and all(len(x) <= 5 for x in batches)
    assert starts.tolist() == list(range(offset, 100 - length, length))  # non-overlapping, one per window
    assert torch.equal(buf.visits, before)
    buf.get_data(starts, length, prefix=1, return_next_obs=True)  # every window fits, with the next obs


def test_sample_obs_returns_distinct_stored_stacks() -> None:
    stream = make_stream(60, seed=7)
    buf = fill(stream)
    obs = buf.sample_obs(20, torch.Generator().manual_seed(0))
    assert obs.shape == (20, F, S, S) and obs.dtype == torch.uint8
    ids = [tuple(x) for x in decode(obs).tolist()]
    assert set(ids) <= {tuple(s) for s in stream.stacks[:60]}  # stacks of rows [0, size)
    assert len(set(ids)) == 20  # distinct rows (every row's newest frame is unique in the stream)


def _assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert a.size == b.size
    idx = torch.arange(a.size + 1)
    assert torch.equal(a.get_obs(idx), b.get_obs(idx))
    starts = torch.arange(a.size)
    da, db = a.get_data(starts, 1), b.get_data(starts, 1)
    for name in ("obs", "actions", "rewards", "terminated", "truncated"):
        assert torch.equal(getattr(da, name), getattr(db, name)), name
    assert torch.equal(a.current_obs(), b.current_obs())


def _chunk_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_flush_and_load_round_trip(tmp_path: Path) -> None:
    stream = make_stream(300, seed=8)
    buf = ReplayBuffer(400, frame_stack=F, frame_size=S)
    buf.reset_obs(obs_of(stream.stacks[0]), stack_reset=True)
    for i in range(300):
        buf.add(stream.actions[i], stream.rewards[i], stream.terminated[i], stream.truncated[i],
                obs_of(stream.stacks[i + 1]), stream.resets[i + 1])
        if i + 1 in (100, 170):
            buf.flush(tmp_path)
    assert buf.flush(tmp_path) == 130
    assert buf.flush(tmp_path) == 0
    assert _chunk_names(tmp_path) == ["chunk_000000000_000000100.npz", "chunk_000000100_000000170.npz",
                                      "chunk_000000170_000000300.npz"]
    _assert_same(ReplayBuffer.load(tmp_path, capacity=400, frame_stack=F, frame_size=S), buf)
    for upto in (150, 170, 0):  # inside a chunk, on a boundary, nothing but the first observation
        loaded = ReplayBuffer.load(tmp_path, capacity=400, upto=upto, frame_stack=F, frame_size=S)
        _assert_same(loaded, fill(stream, rows=upto))  # an independent buffer fed only `upto` steps
    exact = ReplayBuffer.load(tmp_path, capacity=150, upto=150, frame_stack=F, frame_size=S)  # reads a prefix
    _assert_same(exact, fill(stream, rows=150))
    exact.flush(tmp_path / "copy")  # a directory without chunks gets every row
    _assert_same(ReplayBuffer.load(tmp_path / "copy", capacity=150, frame_stack=F, frame_size=S), exact)
    with pytest.raises(ValueError, match="upto"):
        ReplayBuffer.load(tmp_path, capacity=400, upto=301, frame_stack=F, frame_size=S)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer.load(tmp_path, capacity=200, frame_stack=F, frame_size=S)


def test_state_dict_round_trip_weights_only(tmp_path: Path) -> None:
    stream = make_stream(200, seed=9)
    buf = fill(stream)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        buf.sample_indices(8, 4, g)
    buf.flush(tmp_path / "replay")
    torch.save({"replay": buf.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["replay"]
    loaded = ReplayBuffer.load(tmp_path / "replay", capacity=400, upto=state["size"], frame_stack=F,
                               frame_size=S)
    loaded.load_state_dict(state)
    assert torch.equal(loaded.visits, buf.visits) and loaded.visits.sum() == 160
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(loaded.sample_indices(8, 4, g1), buf.sample_indices(8, 4, g2))
    with pytest.raises(ValueError, match="size"):
        fill(stream, rows=100).load_state_dict(state)


@pytest.mark.parametrize("upto", [150, 170])
def test_flush_after_resume_drops_stale_chunks(tmp_path: Path, upto: int) -> None:
    """A run flushed 300 rows but its checkpoint says `upto`; the resumed run diverges and flushes again."""
    first = make_stream(300, seed=10)
    crashed = fill(first, rows=100)
    crashed.flush(tmp_path)
    for i in range(100, 300):
        crashed.add(first.actions[i], first.rewards[i], first.terminated[i], first.truncated[i],
                    obs_of(first.stacks[i + 1]), first.resets[i + 1])
        if i + 1 == 170:
            crashed.flush(tmp_path)
    crashed.flush(tmp_path)
    (tmp_path / ".chunk_000000300_000000310.npz.tmp").write_bytes(b"half-written")

    resumed = ReplayBuffer.load(tmp_path, capacity=400, upto=upto, frame_stack=F, frame_size=S)
    other = make_stream(80, seed=11)  # a different continuation from the restored current observation
    last = first.stacks[upto]
    for i in range(80):
        new = other.stacks[i + 1][-1] + 1000
        last = [new] * F if other.resets[i + 1] else last[1:] + [new]
        resumed.add(other.actions[i], other.rewards[i], other.terminated[i], other.truncated[i],
                    obs_of(last), other.resets[i + 1])
    resumed.flush(tmp_path)
    names = _chunk_names(tmp_path)
    ends = [int(n[16:25]) for n in names]
    starts = [int(n[6:15]) for n in names]
    assert starts[0] == 0 and starts[1:] == ends[:-1] and ends[-1] == upto + 80  # contiguous
    assert not any(n.endswith(".tmp") for n in names)
    _assert_same(ReplayBuffer.load(tmp_path, capacity=400, frame_stack=F, frame_size=S), resumed)


def test_nbytes_stores_single_frames() -> None:
    buf = ReplayBuffer(1000, frame_stack=4, frame_size=64)
    frames = 1001 * 64 * 64
    assert frames < buf.nbytes() < frames * 1.01  # ≈ 4 KiB per step; stored stacks would be 16 KiB


def test_crash_during_truncation_prefers_the_truncated_copy(tmp_path: Path) -> None:
    """`flush` writes the truncated copy of a straddling chunk before deleting the original; a crash in between
    leaves both, and loading must take the shorter (valid) one and ignore everything after it."""
    stream = make_stream(120, seed=12)
    fill(stream, rows=100).flush(tmp_path)  # chunk_0_100, the stale original
    fill(stream, rows=120).flush(tmp_path / "later")
    (tmp_path / "later" / "chunk_000000000_000000120.npz").rename(tmp_path / "chunk_000000100_000000120.npz")
    fill(make_stream(50, seed=13), rows=50).flush(tmp_path / "truncated")
    (tmp_path / "truncated" / "chunk_000000000_000000050.npz").rename(tmp_path / "chunk_000000000_000000050.npz")
    loaded = ReplayBuffer.load(tmp_path, capacity=400, frame_stack=F, frame_size=S)
    _assert_same(loaded, fill(make_stream(50, seed=13), rows=50))
