# The tenantflow image: one image, two commands (docker-compose.temporal.yml runs both).
#   worker: python worker.py
#   api:    uvicorn api.main:app --host 0.0.0.0 --port 8000
# Configuration comes only from TENANTFLOW_* environment variables (tenantflow/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md worker.py ./
COPY tenantflow ./tenantflow
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY devstack ./devstack
COPY standins ./standins
COPY cli ./cli
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tenantflow

USER tenantflow
EXPOSE 8000
CMD ["python", "worker.py"]
