# Backend: FastAPI + twm_core (torch). Build context is the repo root (see docker-compose.yml).
# CPU wheel by default. For a CUDA image pass a CUDA wheel index, e.g.
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 backend
# (the wheels bundle the CUDA libraries; the host needs the NVIDIA driver and container toolkit).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md ./
COPY twm_core/ twm_core/
COPY backend/ backend/
COPY frontend/ frontend/
# The ray extra lets the backend submit to a Ray cluster (TWM_EXECUTOR=ray, TWM_RAY_ADDRESS=<head>:6379).
RUN pip install '.[ray]'

ENV TWM_RUNS_DIR=/app/checkpoints
RUN mkdir -p /app/checkpoints
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"
# `python -m backend` refuses 0.0.0.0 without TWM_API_TOKEN (or the TWM_ALLOW_NO_TOKEN=1 opt-out): compose passes it.
CMD ["python", "-m", "backend", "--host", "0.0.0.0", "--port", "8000"]
