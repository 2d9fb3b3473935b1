"""Dream sessions: imagination as an object to inspect — step, branch, sample futures, read attention.

`DreamSession.begin(agent, reset_start(agent, seed), seed)` starts one; see `session` for the semantics.
"""

from twm_core.dream.attention import AttentionOverview, QueryAttention, attention_overview, query_attention
from twm_core.dream.futures import Futures, imagine_futures
from twm_core.dream.session import DreamPoint, DreamSession, RealStep, StepErrors
from twm_core.dream.start import DreamError, DreamStart, StartCache, replay_start, reset_start

__all__ = [
    "AttentionOverview", "DreamError", "DreamPoint", "DreamSession", "DreamStart", "Futures", "QueryAttention",
    "RealStep", "StartCache", "StepErrors", "attention_overview", "imagine_futures", "query_attention", "replay_start",
    "reset_start",
]
