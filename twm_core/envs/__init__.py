"""Environments of the TWM protocol: Atari 100k games through the ALE, and the built-in `Catch`."""

from twm_core.envs.atari import EnvSnapshot, action_meanings, make_env, restore, snapshot, transform_reward
from twm_core.envs.catch import Catch
from twm_core.envs.games import ATARI100K_GAMES, BUILTIN_GAMES, available_games, resolve_game
from twm_core.envs.wrappers import FORCE_RESET, EpisodeInfo, EpisodicLives, FireAfterLifeLoss, NoopStart

__all__ = [
    "ATARI100K_GAMES",
    "BUILTIN_GAMES",
    "FORCE_RESET",
    "Catch",
    "EnvSnapshot",
    "EpisodeInfo",
    "EpisodicLives",
    "FireAfterLifeLoss",
    "NoopStart",
    "action_meanings",
    "available_games",
    "make_env",
    "resolve_game",
    "restore",
    "snapshot",
    "transform_reward",
]
