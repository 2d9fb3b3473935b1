"""Game names: the 26 Atari 100k games, the built-in `Catch`, and every other ALE game.

Names are the short PascalCase names of the ALE v5 ids (`Pong` for `ALE/Pong-v5`). `resolve_game` turns a user
string into the canonical name, case-insensitively, and rejects unknown names with the list of valid ones.
"""

from __future__ import annotations

from functools import cache

ATARI100K_GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond",
    "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest",
    "UpNDown",
)
"""The Atari 100k benchmark (Kaiser et al. 2020), as used by TWM (method.md §7)."""

BUILTIN_GAMES: tuple[str, ...] = ("Catch",)
"""Games implemented in this package (no emulator), for fast tests and CPU demos."""

# ROMs that ale_py ships but registers no single-player v5 env for (see ale_py/registration.py).
_MULTIPLAYER_ONLY_ROMS = frozenset({"combat", "joust", "maze_craze", "warlords"})


def _rom_id_to_name(rom: str) -> str:
    """`kung_fu_master` → `KungFuMaster` (the rule ale_py uses for its v5 ids)."""
    return rom.title().replace("_", "")


@cache
def _other_ale_games() -> tuple[str, ...]:
    """Every other single-player ROM bundled with ale_py, sorted (reads one small JSON file, cached)."""
    try:
        from ale_py import roms
    except ImportError:  # pragma: no cover - ale_py is a core dependency
        return ()
    known = set(ATARI100K_GAMES)
    names = {_rom_id_to_name(rom) for rom in roms.get_all_rom_ids() if rom not in _MULTIPLAYER_ONLY_ROMS}
    return tuple(sorted(names - known))


def available_games() -> list[str]:
    """All playable names: the 26 Atari 100k games, then `Catch`, then the other ALE games, sorted."""
    return [*ATARI100K_GAMES, *BUILTIN_GAMES, *_other_ale_games()]


def is_builtin(name: str) -> bool:
    """Whether `name` (already resolved) is a built-in game rather than an ALE ROM."""
    return name in BUILTIN_GAMES


def resolve_game(name: str) -> str:
    """Canonical short name for `name` (case-insensitive); raises `ValueError` naming the valid games."""
    games = available_games()
    by_lower = {game.lower(): game for game in games}
    canonical = by_lower.get(name.strip().lower()) if isinstance(name, str) else None
    if canonical is None:
        raise ValueError(f"unknown game {name!r}; valid games: {', '.join(games)}")
    return canonical
