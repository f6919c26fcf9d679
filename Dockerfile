# Image for docker-compose.yml (production shape). Not used by `make up` or the tests.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlroom controlroom
COPY producers producers
COPY streams streams
COPY sinks sinks
COPY api api
RUN pip install --no-cache-dir .
USER nobody
