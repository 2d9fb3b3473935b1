# Dashboard: Streamlit only. No torch, no twm_core: it talks to the backend over HTTP (TWM_BACKEND_URL).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

RUN pip install streamlit httpx plotly

COPY frontend/ frontend/

# `frontend` is imported as a package from /app (the backend image installs it; here the path is enough).
ENV PYTHONPATH=/app TWM_BACKEND_URL=http://backend:8000
EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "frontend/streamlit_app.py", "--server.address=0.0.0.0", "--server.port=8501", \
     "--server.headless=true", "--browser.gatherUsageStats=false"]
