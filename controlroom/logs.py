"""structlog set-up: JSON lines (orjson) in production or when piped, coloured console in a tty.

One format for every line a process writes: our own (structlog) and the libraries' (uvicorn and its access log,
aiokafka, Faust and mode, through the standard library's logging), which the root handler renders with the same
processors (structlog.stdlib.ProcessorFormatter).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

# Library loggers kept quieter than our own level: Faust and mode narrate every service start at INFO (DEBUG
# shows it). aiokafka and uvicorn keep the process's level: group joins, partition assignments, the access log.
QUIET_LIBRARIES = ("faust", "mode")
ACCESS_LOG_FIELDS = ("client", "method", "path", "http_version", "status")  # uvicorn.access's message arguments


def _orjson_dumps(obj: object, default: object = None) -> str:
    return orjson.dumps(obj, default=default).decode()  # type: ignore[arg-type]


class _CurrentStderr:
    """Writes to whatever sys.stderr is now: a logger cached early never holds a stream closed later
    (test capture swaps sys.stderr per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# The root logger's one handler (formatter set by configure_logging): module-level so it can be put back after a
# library replaced it
ROOT_HANDLER = logging.StreamHandler(_CurrentStderr())


def _add_process(process: str) -> structlog.typing.Processor:
    """`process` on every line, from any thread (a thread has none of the main thread's contextvars)."""

    def add(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("process", process)
        return event_dict

    return add


def _access_fields(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn's access log line as fields too (client, method, path, http_version, status), to query in JSON. The
    message's arguments (pass_foreign_args) are dropped from every other line: its text already holds them."""
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access" and isinstance(args, tuple) \
            and len(args) == len(ACCESS_LOG_FIELDS):
        event_dict.update(zip(ACCESS_LOG_FIELDS, args, strict=True))
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", process: str = "") -> None:
    """Configure once per process. `process` is on every line so merged logs stay readable."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps) if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([_add_process(process)] if process else []),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # one write per line (message and newline together): print() wrote them apart, and a line another thread
        # logged in between (uvicorn's access log, through the stdlib handler) ended up glued to it
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _access_fields], pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    ROOT_HANDLER.setFormatter(formatter)
    ROOT_HANDLER.setLevel(numeric)  # the process's level; the root logger passes everything to it
    route_stdlib_logging()


def route_stdlib_logging() -> None:
    """Every standard-library log record through our formatter: ROOT_HANDLER the root logger's only handler, the
    libraries' own handlers removed so their records reach it. Called again after a library configured logging its
    own way (Faust's Worker replaces the root handlers and level at start)."""
    if ROOT_HANDLER.formatter is None:  # configure_logging has not run: leave logging as it is
        return
    level = ROOT_HANDLER.level
    root = logging.getLogger()
    root.setLevel(level)
    root.handlers[:] = [ROOT_HANDLER]
    for name in QUIET_LIBRARIES:  # at DEBUG everything; else their warnings and errors only
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
