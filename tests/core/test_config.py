"""The atari100k preset against the reference table (method.md §2), round trips, and bad values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from twm_core.config import ConfigError, EnvConfig, TWMConfig
from twm_core.config_parsing import config_schema, parse_assignments
from twm_core.presets import atari100k, debug, make_config

METHOD_MD = Path(__file__).resolve().parents[3] / "shared" / "reference" / "method.md"

# Reference key (jrobine/twm config.py, as tabulated in method.md §2) -> (our section, our field).
KEY_MAP = {
    "buffer_capacity": ("replay", "capacity"), "buffer_temperature": ("replay", "temperature"),
    "buffer_prefill": ("replay", "prefill"), "budget": ("train", "budget"),
    "pretrain_budget": ("train", "pretrain_budget"), "pretrain_obs_p": ("train", "pretrain_obs_p"),
    "pretrain_dyn_p": ("train", "pretrain_dyn_p"), "wm_batch_size": ("train", "wm_batch_size"),
    "wm_sequence_length": ("train", "wm_sequence_length"), "wm_train_steps": ("train", "wm_train_steps"),
    "wm_memory_length": ("dyn", "memory_length"), "wm_discount_threshold": ("ac", "discount_threshold"),
    "eval_every": ("train", "eval_every"), "eval_episodes": ("train", "eval_episodes"),
    "final_eval_episodes": ("train", "final_eval_episodes"),
    "env_frame_size": ("env", "frame_size"), "env_frame_skip": ("env", "frame_skip"),
    "env_frame_stack": ("env", "frame_stack"), "env_grayscale": ("env", "grayscale"),
    "env_noop_max": ("env", "noop_max"), "env_time_limit": ("env", "time_limit"),
    "env_episodic_lives": ("env", "episodic_lives"), "env_reward_transform": ("env", "reward_transform"),
    "env_discount_factor": ("env", "discount_factor"), "env_discount_lambda": ("env", "discount_lambda"),
    "z_categoricals": ("obs", "z_categoricals"), "z_categories": ("obs", "z_categories"),
    "obs_channels": ("obs", "channels"), "obs_dropout": ("obs", "dropout"), "obs_lr": ("obs", "lr"),
    "obs_wd": ("obs", "weight_decay"), "obs_eps": ("obs", "eps"), "obs_grad_clip": ("obs", "grad_clip"),
    "obs_entropy_coef": ("obs", "entropy_coef"), "obs_entropy_threshold": ("obs", "entropy_threshold"),
    "obs_consistency_coef": ("obs", "consistency_coef"), "obs_decoder_coef": ("obs", "decoder_coef"),
    "dyn_embed_dim": ("dyn", "embed_dim"), "dyn_num_heads": ("dyn", "num_heads"),
    "dyn_head_dim": ("dyn", "head_dim"), "dyn_num_layers": ("dyn", "num_layers"),
    "dyn_feedforward_dim": ("dyn", "feedforward_dim"), "dyn_z_dims": ("dyn", "z_dims"),
    "dyn_reward_dims": ("dyn", "reward_dims"), "dyn_discount_dims": ("dyn", "discount_dims"),
    "dyn_input_rewards": ("dyn", "input_rewards"), "dyn_dropout": ("dyn", "dropout"), "dyn_lr": ("dyn", "lr"),
    "dyn_wd": ("dyn", "weight_decay"), "dyn_eps": ("dyn", "eps"), "dyn_grad_clip": ("dyn", "grad_clip"),
    "dyn_z_coef": ("dyn", "z_coef"), "dyn_reward_coef": ("dyn", "reward_coef"),
    "dyn_discount_coef": ("dyn", "discount_coef"),
    "ac_batch_size": ("ac", "batch_size"), "ac_horizon": ("ac", "horizon"), "ac_input_h": ("ac", "input_h"),
    "actor_dims": ("ac", "actor_dims"), "critic_dims": ("ac", "critic_dims"), "actor_lr": ("ac", "actor_lr"),
    "actor_eps": ("ac", "actor_eps"), "actor_wd": ("ac", "actor_weight_decay"),
    "actor_grad_clip": ("ac", "actor_grad_clip"), "actor_entropy_coef": ("ac", "entropy_coef"),
    "actor_entropy_threshold": ("ac", "entropy_threshold"), "critic_lr": ("ac", "critic_lr"),
    "critic_eps": ("ac", "critic_eps"), "critic_wd": ("ac", "critic_weight_decay"),
    "critic_grad_clip": ("ac", "critic_grad_clip"), "critic_target_interval": ("ac", "critic_target_interval"),
}
# Reference keys that are fixed architecture choices here (SiLU everywhere, no norms, no discount input,
# no h-norm, no advantage normalisation): checked against these constants instead of a field.
FIXED = {"obs_act": "silu", "obs_norm": "none", "dyn_act": "silu", "dyn_norm": "none",
         "dyn_input_discounts": False, "ac_act": "silu", "ac_norm": "none", "ac_dropout": 0,
         "ac_h_norm": "none", "ac_normalize_advantages": False}

# The same values, transcribed by hand from method.md §2, so that the test does not depend on shared/.
EXPECTED = {
    "buffer_capacity": 100000, "buffer_temperature": 20.0, "buffer_prefill": 5000, "budget": 1e9,
    "pretrain_budget": 5e7, "pretrain_obs_p": 0.6, "pretrain_dyn_p": 0.3, "wm_batch_size": 100,
    "wm_sequence_length": 16, "wm_train_steps": 1, "wm_memory_length": 16, "wm_discount_threshold": 0.1,
    "eval_every": 5000, "eval_episodes": 10, "final_eval_episodes": 100, "env_frame_size": 64,
    "env_frame_skip": 4, "env_frame_stack": 4, "env_grayscale": True, "env_noop_max": 30, "env_time_limit": 27000,
    "env_episodic_lives": True, "env_reward_transform": "tanh", "env_discount_factor": 0.99,
    "env_discount_lambda": 0.95, "z_categoricals": 32, "z_categories": 32, "obs_channels": 48, "obs_dropout": 0,
    "obs_lr": 1e-4, "obs_wd": 1e-6, "obs_eps": 1e-5, "obs_grad_clip": 100, "obs_entropy_coef": 5,
    "obs_entropy_threshold": 0.1, "obs_consistency_coef": 0.01, "obs_decoder_coef": 1, "dyn_embed_dim": 256,
    "dyn_num_heads": 4, "dyn_head_dim": 64, "dyn_num_layers": 10, "dyn_feedforward_dim": 1024,
    "dyn_z_dims": (512,) * 4, "dyn_reward_dims": (256,) * 4, "dyn_discount_dims": (256,) * 4,
    "dyn_input_rewards": True, "dyn_dropout": 0.1, "dyn_lr": 1e-4, "dyn_wd": 1e-6, "dyn_eps": 1e-5,
    "dyn_grad_clip": 100, "dyn_z_coef": 1, "dyn_reward_coef": 10, "dyn_discount_coef": 50, "ac_batch_size": 400,
    "ac_horizon": 15, "ac_input_h": False, "actor_dims": (512,) * 4, "critic_dims": (512,) * 4,
    "actor_lr": 1e-4, "actor_eps": 1e-5, "actor_wd": 1e-6, "actor_grad_clip": 1, "actor_entropy_coef": 1e-2,
    "actor_entropy_threshold": 0.1, "critic_lr": 1e-5, "critic_eps": 1e-5, "critic_wd": 1e-6,
    "critic_grad_clip": 1, "critic_target_interval": 1,
}


def _parse_value(text: str):
    text = re.sub(r"\(.*\)", "", text).strip().strip("*").strip()  # drop remarks in parentheses
    if m := re.fullmatch(r"\[(\d+)\]\s*×\s*(\d+)", text):
        return (int(m.group(1)),) * int(m.group(2))
    if text.startswith("["):
        return tuple(int(v) for v in text.strip("[]").split(","))
    word = text.split()[0].strip("*:")  # '400 imagined trajectories' -> 400, '**False**: the ...' -> False
    if word in ("True", "False"):
        return word == "True"
    if word.startswith("'"):
        return word.strip("'")
    return float(word)


def _method_md_values() -> dict[str, object]:
    values: dict[str, object] = {}
    section = re.search(r"## 2\. Hyperparameters(.*?)\n## 3\.", METHOD_MD.read_text(), re.S).group(1)
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        keys = re.findall(r"`(\w+)`", cells[1])
        separator = " × " if "×" in cells[1] else " / "
        raw = cells[2].split(separator) if len(keys) > 1 else [cells[2]]
        assert len(raw) == len(keys), line
        for key, value in zip(keys, raw, strict=True):
            values[key] = _parse_value(value)
    return values


def _same(a, b) -> bool:
    if isinstance(a, tuple | bool | str) or isinstance(b, tuple | bool | str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-12)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_atari100k_matches_reference_table(key):
    section, name = KEY_MAP[key]
    value = getattr(getattr(TWMConfig(), section), name)  # the defaults are the reference values
    assert _same(value, EXPECTED[key]), f"{key}: preset has {value!r}, reference {EXPECTED[key]!r}"


@pytest.mark.skipif(not METHOD_MD.exists(), reason="shared/reference/method.md not beside the checkout")
def test_transcription_matches_method_md():
    """Every hyperparameter row of method.md §2 is mapped, and the transcribed values equal the document."""
    values = _method_md_values()
    assert len(values) > 60
    unmapped = set(values) - set(KEY_MAP) - set(FIXED)
    assert not unmapped, f"reference keys without a config field: {sorted(unmapped)}"
    for key, value in values.items():
        expected = FIXED.get(key, EXPECTED.get(key))
        assert _same(value, expected), f"{key}: method.md says {value!r}, test expects {expected!r}"


def test_reference_quirks_are_explicit_fields():
    cfg = atari100k()
    assert cfg.dyn.attention_scale == "model_dim"  # 1/sqrt(256), method.md §6.5.3
    assert cfg.train.pretrain_ac_p == pytest.approx(1 - 0.6 + 0.3)  # method.md §6.5.1
    assert cfg.train.total_steps == cfg.replay.capacity


def test_training_frequency_matches_reference():
    """budget_per_step = 100·16 + 400·15 = 7600 and 125,000 training steps (method.md §3.4)."""
    t, ac = atari100k().train, atari100k().ac
    per_step = t.wm_train_steps * t.wm_batch_size * t.wm_sequence_length + ac.batch_size * ac.horizon
    assert per_step == 7600
    assert (t.budget - t.pretrain_budget) / per_step == 125_000


@pytest.mark.parametrize("preset", [atari100k, debug])
def test_round_trip(preset):
    cfg = preset("MsPacman", seed=3)
    assert TWMConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.env.game == "MsPacman" and cfg.seed == 3


def test_uniform_temperature_round_trips_through_json():
    import json
    cfg = make_config("debug", overrides={"replay.temperature": "inf"})
    assert math.isinf(cfg.replay.temperature)
    assert TWMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_debug_is_small():
    d = debug()
    assert d.dyn.num_layers == 2 and d.dyn.embed_dim < 256 and d.train.total_steps <= 5000


def test_overrides_coerce_strings():
    cfg = make_config("debug", "Breakout", 1, {"dyn.num_layers": "3", "dyn.input_rewards": "false",
                                               "obs.mlp_dims": "32,32"})
    assert cfg.dyn.num_layers == 3 and cfg.dyn.input_rewards is False and cfg.obs.mlp_dims == (32, 32)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("dyn.num_heads", -1, "dyn.num_heads"),
    ("obs.channels", 0, "obs.channels"),
    ("replay.temperature", 0, "replay.temperature"),
    ("replay.temperature", -2.0, "replay.temperature"),
    ("ac.horizon", 0, "ac.horizon"),
    ("ac.entropy_threshold", 1.5, "ac.entropy_threshold"),
    ("env.discount_factor", 0.0, "env.discount_factor"),
    ("dyn.attention_scale", "bogus", "dyn.attention_scale"),
    ("dyn.num_layers", "ten", "dyn.num_layers"),
    ("dyn.z_dims", "64,-3", "dyn.z_dims"),
])
def test_bad_values_name_the_field(key, value, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        make_config("debug", overrides={key: value})


def test_unknown_keys_and_presets_are_errors():
    with pytest.raises(ConfigError, match="dyn.nope"):
        make_config("debug", overrides={"dyn.nope": 1})
    with pytest.raises(ConfigError, match="preset"):
        make_config("huge")


def test_defaults_are_the_atari100k_preset():
    assert atari100k("Breakout", 3) == TWMConfig(env=EnvConfig(game="Breakout"), seed=3)
    assert TWMConfig().preset == "atari100k" and TWMConfig().dyn.z_loss_as_published is False


@pytest.mark.parametrize(("data", "message"), [
    ({"dyn": {"num_layers": "ten"}}, "dyn.num_layers has the wrong type: 'ten'"),
    ({"dyn": {"num_layers": 2.7}}, "dyn.num_layers has the wrong type: 2.7"),  # never silently truncated
    ({"dyn": {"num_layers": "2.7"}}, "dyn.num_layers has the wrong type"),
    ({"dyn": {"nope": 1}}, "unknown config key: dyn.nope"),
    ({"nope": 1}, "unknown config key: nope"),
    ({"env": 3}, "env has the wrong type: 3"),
    ({"env": {"game": 7}}, "env.game has the wrong type: 7"),
    ({"obs": {"mlp_dims": ["a"]}}, "obs.mlp_dims.0 has the wrong type: 'a'"),
    ({"dyn": {"num_heads": -1}}, "dyn.num_heads must be > 0, got -1"),  # the section's own range check
    ({"replay": {"prefill": 10}, "train": {"total_steps": 5}}, "replay.prefill must be < train.total_steps"),
    ([1, 2], "a config must be a mapping"),
])
def test_files_and_requests_are_read_by_one_mechanism_naming_the_field(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TWMConfig.from_dict(data)


def test_one_assignment_grammar_for_every_command_line():
    sets = parse_assignments(["train.total_steps=1e4", "dyn.input_rewards=false", "obs.mlp_dims=32,32",
                              "dyn.z_dims=[64, 64]", "replay.temperature=inf", "env.game=Breakout", "seed=3"])
    assert sets == {"train.total_steps": 1e4, "dyn.input_rewards": False, "obs.mlp_dims": "32,32",
                    "dyn.z_dims": [64, 64], "replay.temperature": "inf", "env.game": "Breakout", "seed": 3}
    cfg = make_config("debug", overrides={**sets, "replay.capacity": 10_000})
    assert cfg.train.total_steps == 10_000 and isinstance(cfg.train.total_steps, int)
    assert cfg.obs.mlp_dims == (32, 32) and cfg.dyn.z_dims == (64, 64) and math.isinf(cfg.replay.temperature)
    assert cfg.env.game == "Breakout" and cfg.seed == 3 and cfg.dyn.input_rewards is False
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["novalue"])


def test_bench_reads_the_same_flags_as_twm(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package
    from bench.common import make_parser

    parser = make_parser("probe", "probe")
    for flag in ("--set", "--override"):
        args = parser.parse_args(["--preset", "debug", flag, "dyn.num_layers=3", flag, "obs.mlp_dims=16,16"])
        assert make_config(args.preset, args.game, args.seed, parse_assignments(args.set)) == make_config(
            "debug", args.game, 0, {"dyn.num_layers": 3, "obs.mlp_dims": (16, 16)})


def test_json_schema_describes_every_field_with_its_default():
    schema = config_schema()
    dyn = schema["$defs"]["DynamicsConfig"]["properties"]
    assert dyn["num_layers"] == {"default": 10, "title": "Num Layers", "type": "integer"}
    assert "published code" in dyn["z_loss_as_published"]["description"]
    assert schema["$defs"]["ReplayConfig"]["additionalProperties"] is False
    assert set(schema["properties"]) == {"env", "replay", "obs", "dyn", "ac", "train", "preset", "seed",
                                         "deterministic"}
