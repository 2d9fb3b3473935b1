"""Thin HTTP client for the backend: one method per endpoint, errors turned into readable messages.

The dashboard talks to the backend over HTTP only; this module (and the whole frontend) never imports torch.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx
import streamlit as st

DEFAULT_BACKEND_URL = "http://127.0.0.1:8000"


class BackendError(RuntimeError):
    """A failed backend call, with a message fit to show the user as is."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def backend_url() -> str:
    """The backend base URL: `TWM_BACKEND_URL`, else the `make run` default."""
    return os.environ.get("TWM_BACKEND_URL", DEFAULT_BACKEND_URL).rstrip("/")


def api_token() -> str | None:
    """The backend's API token from `TWM_API_TOKEN` (the variable the backend reads too); None when unset or empty."""
    return os.environ.get("TWM_API_TOKEN") or None


def _detail_message(response: httpx.Response) -> str:
    """The JSON `detail` of an error response, flattened for humans (422 gives a list of field errors)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    return f"HTTP {response.status_code}: {detail or response.reason_phrase}"


class BackendClient:
    """Synchronous client for the TWM backend; thread-safe, so one instance serves every Streamlit session."""

    def __init__(self, base_url: str | None = None, timeout: float = 10.0, model_timeout: float = 180.0,
                 token: str | None = None) -> None:
        """`token`: sent as `Authorization: Bearer <token>` on every call (none when None)."""
        self.base_url = (base_url or backend_url()).rstrip("/")
        self.model_timeout = model_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            message = f"Backend not reachable at {self.base_url} — start it with `make run`"
            raise BackendError(message) from exc
        except httpx.TimeoutException as exc:
            raise BackendError(f"Backend at {self.base_url} did not answer in time ({path})") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Request to {self.base_url}{path} failed: {exc}") from exc
        if response.is_error:
            raise BackendError(_detail_message(response), status_code=response.status_code)
        return response.json() if response.content else None  # 204 has no body

    def health(self) -> dict[str, Any]:
        """`GET /api/health`: status, version, device, cuda_available, runs_dir."""
        return self._request("GET", "/api/health")

    def games(self) -> dict[str, list[str]]:
        """`GET /api/games`: `{"games": [...], "atari100k": [...]}`."""
        return self._request("GET", "/api/games")

    def presets(self) -> list[dict[str, Any]]:
        """`GET /api/presets`: `[{"name", "description", "config"}, ...]`."""
        return self._request("GET", "/api/presets")["presets"]

    def baselines(self, game: str) -> dict[str, Any]:
        """`GET /api/games/{game}/baselines`: the reference scores `random`, `human`, `twm` (the paper's) and
        `twm_runs` of an Atari 100k game; 404 (a `BackendError`) for a game without them, such as Catch."""
        return self._request("GET", f"/api/games/{quote(game, safe='')}/baselines")

    # ---------------------------------------------------------------------------------------------- jobs
    def jobs(self) -> list[dict[str, Any]]:
        """`GET /api/jobs`: newest first; each with state, progress, pid, run_id, error."""
        return self._request("GET", "/api/jobs")["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/jobs/{job_id}")

    def create_job(self, game: str, preset: str, seed: int, steps: int | None = None, device: str = "auto",
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """`POST /api/jobs`: start `twm train` on the backend; returns the job (job_id, run_id, state)."""
        body = {"game": game, "preset": preset, "seed": seed, "steps": steps, "device": device,
                "overrides": overrides or {}}
        return self._request("POST", "/api/jobs", json=body)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/jobs/{job_id}/cancel")

    def resume_job(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/jobs/{job_id}/resume")

    # ---------------------------------------------------------------------------------------------- sweeps
    def delete_job(self, job_id: str, delete_run: bool = False) -> None:
        self._request("DELETE", f"/api/jobs/{job_id}", params={"delete_run": str(delete_run).lower()})

    def delete_run(self, run_id: str) -> None:
        self._request("DELETE", f"/api/runs/{run_id}")

    def create_sweep(self, games: list[str] | str, seeds: list[int] | str, preset: str, steps: int | None = None,
                     device: str | None = None, overrides: dict[str, Any] | None = None, max_retries: int = 1,
                     name: str | None = None) -> dict[str, Any]:
        """`POST /api/sweeps`: one job per (game, seed); `games` may be `"atari100k"`, `seeds` a range like `"0-4"`."""
        body = {"games": games, "seeds": seeds, "preset": preset, "steps": steps, "device": device,
                "overrides": overrides or {}, "max_retries": max_retries, "name": name or None}
        return self._request("POST", "/api/sweeps", json=body)

    def list_sweeps(self) -> list[dict[str, Any]]:
        """`GET /api/sweeps`: newest first; each with state, counts, progress and its jobs."""
        answer = self._request("GET", "/api/sweeps")
        # A bare list per the contract; `{"sweeps": [...]}` too, the shape of `GET /api/jobs`.
        return answer["sweeps"] if isinstance(answer, dict) else answer

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        """`POST /api/sweeps/{sweep_id}/cancel`: cancels its queued and running jobs; returns the sweep."""
        return self._request("POST", f"/api/sweeps/{sweep_id}/cancel")

    def sweep_report(self, sweep_id: str) -> dict[str, Any]:
        """`GET /api/sweeps/{sweep_id}/report` (bootstrap CIs: a longer timeout); 409 while no run has a final eval."""
        return self._request("GET", f"/api/sweeps/{sweep_id}/report", timeout=self.model_timeout)

    def runs_report(self, run_ids: list[str]) -> dict[str, Any]:
        """`GET /api/report?runs=a,b`: the report of any runs; 409 while none has a final eval."""
        return self._request("GET", "/api/report", params={"runs": ",".join(run_ids)}, timeout=self.model_timeout)

    # ---------------------------------------------------------------------------------------------- demo
    def demo_status(self) -> dict[str, Any]:
        """`GET /api/demo`: whether the shipped demo run is installed, its facts (score, build minutes) and links."""
        return self._request("GET", "/api/demo")

    def install_demo(self) -> dict[str, Any]:
        """`POST /api/demo`: copy the shipped demo (a learned Catch model) into the runs dir; idempotent."""
        return self._request("POST", "/api/demo")

    # ---------------------------------------------------------------------------------------------- runs
    def runs(self) -> list[dict[str, Any]]:
        """`GET /api/runs`: every run directory, newest first."""
        return self._request("GET", "/api/runs")["runs"]

    def run(self, run_id: str) -> dict[str, Any]:
        """`GET /api/runs/{run_id}`: config, status, latest metrics, checkpoints, scores summary."""
        return self._request("GET", f"/api/runs/{run_id}")

    def metrics(self, run_id: str, keys: list[str] | None = None, after_step: int | None = None,
                max_points: int = 1000, prefix: str | None = None) -> dict[str, Any]:
        """`GET /api/runs/{run_id}/metrics`: `rows` ({step, key: value}), `available_keys`, `last_step`."""
        params: dict[str, Any] = {"max_points": max_points}
        if keys:
            params["keys"] = ",".join(keys)
        if after_step is not None:
            params["after_step"] = after_step
        if prefix:
            params["prefix"] = prefix
        return self._request("GET", f"/api/runs/{run_id}/metrics", params=params)

    def scores(self, run_id: str, kind: str | None = None) -> dict[str, Any]:
        return self._request("GET", f"/api/runs/{run_id}/scores", params={"kind": kind} if kind else None)

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/runs/{run_id}/checkpoints")["checkpoints"]

    def evaluate_checkpoint(self, run_id: str, step: int, episodes: int, seed: int) -> dict[str, Any]:
        """`POST /api/runs/{run_id}/checkpoints/{step}/evaluations`: start an evaluation (a subprocess)."""
        return self._request("POST", f"/api/runs/{run_id}/checkpoints/{step}/evaluations",
                             json={"episodes": episodes, "seed": seed})

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/runs/{run_id}/evaluations")["evaluations"]

    # ---------------------------------------------------------------------------------------------- inspection
    def imagine(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/runs/{run_id}/imagine` (model work: a longer timeout)."""
        return self._request("POST", f"/api/runs/{run_id}/imagine", json=body, timeout=self.model_timeout)

    def attention(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/runs/{run_id}/attention` (model work: a longer timeout)."""
        return self._request("POST", f"/api/runs/{run_id}/attention", json=body, timeout=self.model_timeout)

    def calibration(self, run_id: str, checkpoint: int | str = "latest", windows: int = 256,
                    seed: int = 0) -> dict[str, Any]:
        """`GET /api/runs/{run_id}/calibration`: reward/discount calibration on replay (model work: longer timeout)."""
        return self._request("GET", f"/api/runs/{run_id}/calibration", timeout=self.model_timeout,
                             params={"checkpoint": checkpoint, "windows": windows, "seed": seed})

    # -------------------------------------------------------------------------------------------- dream sessions
    def create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/sessions`: a dream from a real start (body: run_id, checkpoint, seed, start, real, steps)."""
        return self._request("POST", "/api/sessions", json=body, timeout=self.model_timeout)

    def session(self, session_id: str, since: int = 0) -> dict[str, Any]:
        return self._request("GET", f"/api/sessions/{session_id}", params={"since": since},
                             timeout=self.model_timeout)

    def step_session(self, session_id: str, count: int = 1, actions: list[int] | None = None) -> dict[str, Any]:
        """`POST /api/sessions/{id}/step`: the new points only."""
        body: dict[str, Any] = {"count": count} if actions is None else {"actions": actions}
        return self._request("POST", f"/api/sessions/{session_id}/step", json=body, timeout=self.model_timeout)

    def fork_session(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/sessions/{id}/fork` (body: step, action, latent, seed, steps): the new session."""
        return self._request("POST", f"/api/sessions/{session_id}/fork", json=body, timeout=self.model_timeout)

    def session_futures(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/sessions/{session_id}/futures", json=body, timeout=self.model_timeout)

    def session_attention(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/sessions/{session_id}/attention", json=body,
                             timeout=self.model_timeout)

    def session_attention_overview(self, session_id: str, layer: int, token: str = "a",
                                   head: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"layer": layer, "token": token, **({"head": head} if head is not None else {})}
        return self._request("GET", f"/api/sessions/{session_id}/attention/overview", params=params,
                             timeout=self.model_timeout)

    def delete_session(self, session_id: str) -> None:
        self._request("DELETE", f"/api/sessions/{session_id}")


@st.cache_resource
def get_client(base_url: str | None = None, token: str | None = None) -> BackendClient:
    """The process-wide client (the only `st.cache_resource` in the app: httpx clients are thread-safe).

    `base_url` and `token` default to `TWM_BACKEND_URL` and `TWM_API_TOKEN`.
    """
    return BackendClient(base_url or backend_url(), token=token or api_token())
