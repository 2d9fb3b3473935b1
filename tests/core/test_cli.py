"""`twm describe` and argument errors."""

from __future__ import annotations

import json

import pytest

from twm_core.cli import main
from twm_core.config import ConfigError
from twm_core.config_parsing import parse_assignments


def test_describe_json_reports_config_and_parameter_counts(capsys):
    assert main(["describe", "--preset", "atari100k", "--game", "Pong", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["dyn"]["num_layers"] == 10 and out["num_actions"] == 6
    p = out["parameters"]
    assert p["observation_model"] == p["encoder"] + p["decoder"]
    assert p["world_model"] == p["observation_model"] + p["dynamics_model"]
    assert p["total"] == p["world_model"] + p["actor"] + p["critic"]
    # actor: 1024→512→512→512→512→6 with biases
    assert p["actor"] == (1024 * 512 + 512) + 3 * (512 * 512 + 512) + (512 * 6 + 6)


def test_describe_text_lists_sections(capsys):
    assert main(["describe", "--preset", "debug", "--game", "Catch", "--set", "dyn.num_layers=3"]) == 0
    out = capsys.readouterr().out
    assert "[dyn]" in out and "num_layers = 3" in out and "transformer" in out


def test_bad_input_is_a_clean_error(capsys):
    assert main(["describe", "--game", "NoSuchGame"]) == 2
    assert "unknown game 'NoSuchGame'" in capsys.readouterr().err
    assert main(["describe", "--set", "dyn.num_heads=-1"]) == 2
    assert "dyn.num_heads" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        parse_assignments(["novalue"])


def test_eval_prints_raw_and_human_normalized_scores(debug_run, capsys):
    assert main(["eval", str(debug_run), "--episodes", "1", "--checkpoint", "100", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Pong: 1 episodes at step 100" in out
    lines = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[1:] if line.strip()}
    from twm_core.evaluation import human_normalized
    assert -21 <= lines["score_mean"] <= 21
    assert lines["hns"] == pytest.approx(human_normalized("Pong", lines["score_mean"]), rel=1e-3, abs=1e-4)


def test_eval_of_a_missing_checkpoint_is_a_clean_error(debug_run, capsys):
    assert main(["eval", str(debug_run), "--checkpoint", "999"]) == 2
    assert "999" in capsys.readouterr().err
