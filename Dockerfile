# Image for docker-compose.yml (production shape). Not used by `make up` or the tests.
FROM python:3.11-slim
# A fixed uid/gid, not `nobody` (which owns nothing): the worker and the alerter write under /app/data, and a
# named volume mounted there starts as a copy of this image's directory, owner included.
ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" controlroom \
    && useradd --system --uid "$APP_UID" --gid controlroom --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin controlroom
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
# DATA_DIR: the worker's Faust folder, the alerter's state (a named volume in docker-compose.yml)
RUN mkdir -p /app/data/faust /app/data/alerter && chown -R "$APP_UID:$APP_UID" /app/data
ENV DATA_DIR=/app/data
USER 10001:10001
