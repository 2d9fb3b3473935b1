#!/usr/bin/env bash
# Start the backend (uvicorn, :8000) and the dashboard (streamlit, :8501) in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-.venv/bin/python}"
export TWM_RUNS_DIR="${TWM_RUNS_DIR:-checkpoints}"
export TWM_BACKEND_URL="${TWM_BACKEND_URL:-http://127.0.0.1:8000}"
BACKEND_PORT="${BACKEND_PORT:-8000}"
FRONTEND_PORT="${FRONTEND_PORT:-8501}"
mkdir -p "$TWM_RUNS_DIR"

pids=()
stop() {
    trap - INT TERM EXIT
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# `python -m backend`: uvicorn behind the exposure check (a non-loopback host needs TWM_API_TOKEN).
"$PY" -m backend --host 127.0.0.1 --port "$BACKEND_PORT" &
pids+=($!)
"$PY" -m streamlit run frontend/streamlit_app.py --server.headless true --server.address 127.0.0.1 \
    --server.port "$FRONTEND_PORT" --browser.gatherUsageStats false &
pids+=($!)

echo "Dashboard: http://127.0.0.1:$FRONTEND_PORT   API: http://127.0.0.1:$BACKEND_PORT/docs   (Ctrl-C stops both)"
echo "CLI: .venv/bin/twm (or 'source .venv/bin/activate', then 'twm')   Runs: $TWM_RUNS_DIR"
# Return as soon as either server exits (e.g. port in use); the EXIT trap then stops the other one.
wait -n "${pids[@]}"
