# Image for docker-compose.yml (production shape). Not used by `make up` or the tests.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlroom controlroom
COPY producers producers
COPY streams streams
COPY sinks sinks
COPY api api
COPY notify notify
COPY grafana grafana
# No extras: the production image talks to a ClickHouse server and Apache Kafka, so neither chDB nor the
# embedded broker (extra `embedded`) nor the board generator (extra `boards`) is installed.
# keep urllib3 (clickhouse-connect) apart from niquests' urllib3-future: see the Makefile
RUN URLLIB3_NO_OVERRIDE=1 pip install --no-cache-dir --no-binary urllib3-future .
USER nobody
