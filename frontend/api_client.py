"""Thin HTTP client for the backend: one method per endpoint, errors turned into readable messages.

The dashboard talks to the backend over HTTP only; this module (and the whole frontend) never imports torch.
"""

from __future__ import annotations

import os
from typing import Any

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

    def __init__(self, base_url: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = (base_url or backend_url()).rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

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
        return response.json()

    def health(self) -> dict[str, Any]:
        """`GET /api/health`: status, version, device, cuda_available, runs_dir."""
        return self._request("GET", "/api/health")

    def games(self) -> dict[str, list[str]]:
        """`GET /api/games`: `{"games": [...], "atari100k": [...]}`."""
        return self._request("GET", "/api/games")

    def presets(self) -> list[dict[str, Any]]:
        """`GET /api/presets`: `[{"name", "description", "config"}, ...]`."""
        return self._request("GET", "/api/presets")["presets"]


@st.cache_resource
def get_client(base_url: str | None = None) -> BackendClient:
    """The process-wide client (the only `st.cache_resource` in the app: httpx clients are thread-safe)."""
    return BackendClient(base_url or backend_url())
