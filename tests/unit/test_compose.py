"""The production stack, checked without a Docker engine: docker-compose.yml (and its air-gapped override) against
the compose specification's JSON schema, and the invariants that make it start — the order of things (health,
the migration job), data where each image really keeps it, pinned images, every variable in .env.example, the
settings each process needs — plus the Dockerfile, .dockerignore and the ClickHouse `analyst` user.

What no test here can show is that the images behave as their documentation says: the stack has not been started
on a machine with Docker. The image facts these tests rely on are written down next to each table below."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlroom.settings import Settings
from controlroom.warehouse import ADMIN_TABLES, admin_database

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AIRGAP = ROOT / "docker-compose.airgap.yml"
OUR_IMAGE = "controlroom"  # built from the Dockerfile: the only image without a version tag

# Where each image keeps what must outlive its container. apache/kafka: wherever KAFKA_LOG_DIRS says (its
# packaged server.properties says /tmp/kraft-combined-logs, and with only environment variables Kafka's own
# default /tmp/kafka-logs applies); the image creates /var/lib/kafka/data for it, owned by its user.
# clickhouse-server: `path` in its config.xml. grafana: GF_PATHS_DATA. prometheus: its --storage.tsdb.path.
DATA_PATHS = {
    "apache/kafka": "/var/lib/kafka/data",
    "clickhouse/clickhouse-server": "/var/lib/clickhouse",
    "grafana/grafana": "/var/lib/grafana",
    "prom/prometheus": "/prometheus",
}
# The tool each image's healthcheck runs, and why it is in the image: Kafka's own scripts; wget, which the
# clickhouse-server entrypoint itself uses to wait for /ping; busybox's wget in Grafana's Alpine image; our
# image's Python.
HEALTH_TOOLS = {
    "apache/kafka": "/opt/kafka/bin/kafka-broker-api-versions.sh",
    "clickhouse/clickhouse-server": "wget",
    "grafana/grafana": "wget",
    OUR_IMAGE: "python",
}
# What every Control Room process reads, and what some of them need besides (controlroom/settings.py)
COMMON_SETTINGS = {"KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "DATA_DIR", "LOG_FORMAT", "TOPIC_PARTITIONS",
                   "TOPIC_REPLICATION", "TOPIC_MIN_INSYNC_REPLICAS", "FEED_RETENTION_HOURS"}
SERVICE_SETTINGS = {
    "migrate": {"READINGS_RETENTION_DAYS", "ROLLUP_RETENTION_DAYS", "DIAGNOSTICS_RETENTION_DAYS",
                "DELIVERIES_RETENTION_DAYS"},
    "notifier": {"NOTIFY_SIGNING_KEY", "SMTP_HOST", "SMTP_PORT", "SMTP_FROM"},
    "api": {"NOTIFY_SIGNING_KEY", "API_HOST", "API_PORT", "EMBEDDED_SINK"},
}
SECRETS = {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_READONLY_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "NOTIFY_SIGNING_KEY"}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())  # PyYAML resolves the `<<` merge keys as compose does
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def image_name(service: dict[str, Any]) -> tuple[str, str]:
    """(repository, tag) of a service's image; tag '' when there is none."""
    image = str(service["image"])
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return repo, tag


def is_ours(service: dict[str, Any]) -> bool:
    return image_name(service)[0] == OUR_IMAGE


def is_job(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def depends(service: dict[str, Any]) -> dict[str, str]:
    """{service it depends on: condition}; the short list form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: str((spec or {}).get("condition", "service_started")) for name, spec in deps.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume of a service (short syntax `source:target[:mode]`, or long syntax)."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            out.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            parts = str(volume).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def variables(doc: Any) -> dict[str, str]:
    """{name: the operator after it (':-', ':?', '' …)} of every ${VARIABLE} in a loaded compose file's values
    (not its comments, which compose does not read; $$ escapes a $)."""
    if isinstance(doc, dict):
        return {k: v for value in doc.values() for k, v in variables(value).items()}
    if isinstance(doc, list):
        return {k: v for value in doc for k, v in variables(value).items()}
    return {m.group(1): m.group(2) or "" for m in VARIABLE.finditer(doc)} if isinstance(doc, str) else {}


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


# --- the compose specification ---------------------------------------------------------------------------------

def test_compose_files_validate_against_the_compose_specification() -> None:
    """check-jsonschema ships the compose-spec schema (vendor.compose-spec): no network needed."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE),
         str(AIRGAP)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_the_schema_check_does_fail_on_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: x:1\n    depends_on: {db: {condition: when_ready}}\n")
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(broken)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout


# --- order: health, the migration job ------------------------------------------------------------------------------

def test_every_long_running_service_has_a_healthcheck_or_waits_on_a_healthy_one(
        services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if is_job(service):
            continue
        healthy = "healthcheck" in service and not service["healthcheck"].get("disable", False)
        waits = "service_healthy" in depends(service).values()
        assert healthy or waits, f"{name}: no healthcheck, and it waits on no healthy service"


def test_every_image_of_ours_or_theirs_with_a_healthcheck_runs_a_tool_the_image_has(
        services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "healthcheck" not in service:
            continue
        test = service["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test!r}"
        repo = image_name(service)[0]
        if repo in HEALTH_TOOLS:
            assert test[1] == HEALTH_TOOLS[repo], f"{name}: {test[1]} — is it in {repo}?"


def test_conditions_name_services_that_can_meet_them(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, condition in depends(service).items():
            assert dep in services, f"{name} depends on an unknown service {dep}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert is_job(services[dep]), f"{name} waits for {dep} to complete; {dep} is restarted"
            else:
                pytest.fail(f"{name} → {dep}: {condition}: started is not ready (use a health or completion)")


def test_one_migration_job_that_every_other_service_waits_for(services: dict[str, dict[str, Any]]) -> None:
    jobs = [name for name, s in services.items() if is_job(s)]
    assert jobs == ["migrate"]
    assert services["migrate"]["command"] == ["controlroom", "migrate"]
    assert depends(services["migrate"]) == {"clickhouse": "service_healthy"}
    for name, service in services.items():
        if is_ours(service) and name != "migrate":
            assert depends(service).get("migrate") == "service_completed_successfully", name
            assert {"kafka", "clickhouse"} <= {d for d, c in depends(service).items() if c == "service_healthy"}
    assert depends(services["grafana"]).get("migrate") == "service_completed_successfully"  # the boards' tables


def test_the_api_healthcheck_asks_a_route_the_api_has(services: dict[str, dict[str, Any]]) -> None:
    from api.health import router

    script = services["api"]["healthcheck"]["test"][-1]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", script)
    assert url is not None, script
    assert url.group(1) == environment(services["api"])["API_PORT"]
    assert url.group(2) in {getattr(r, "path", None) for r in router.routes}


# --- data where the images keep it --------------------------------------------------------------------------------

def test_data_volumes_are_named_and_mounted_at_the_images_real_data_paths(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        repo = image_name(service)[0]
        for source, _target in mounts(service):
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
        if repo not in DATA_PATHS:
            continue
        path = DATA_PATHS[repo]
        if repo == "apache/kafka":
            assert environment(service)["KAFKA_LOG_DIRS"] == path, "Kafka writes where KAFKA_LOG_DIRS says"
            assert environment(service)["CLUSTER_ID"], "the image refuses KRaft without CLUSTER_ID"
        named = [source for source, target in mounts(service) if target == path and source in declared]
        assert named, f"{name}: no named volume at {path}, where {repo} keeps its data"


def test_clickhouse_backups_go_to_a_volume_of_their_own(services: dict[str, dict[str, Any]]) -> None:
    config = ET.parse(ROOT / "deploy" / "clickhouse" / "backups.xml").getroot()  # noqa: S314 (our own file)
    path = config.findtext("storage_configuration/disks/backups/path")
    assert path and config.findtext("backups/allowed_disk") == "backups"
    targets = dict((t, s) for s, t in mounts(services["clickhouse"]))
    assert targets.get(path.rstrip("/")) == "clickhouse-backups"
    assert targets["/etc/clickhouse-server/config.d/backups.xml"] == "./deploy/clickhouse/backups.xml"


def test_bind_mounts_name_files_of_this_repository(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _target in mounts(service):
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_the_alerters_volume_is_its_data_dir_which_the_image_gives_its_user(
        services: dict[str, dict[str, Any]]) -> None:
    data_dir = environment(services["alerter"])["DATA_DIR"]
    assert [t for _s, t in mounts(services["alerter"])] == [data_dir]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ENV DATA_DIR={data_dir}" in dockerfile


# --- images -------------------------------------------------------------------------------------------------------

def test_every_image_is_pinned_except_our_own(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        repo, tag = image_name(service)
        if repo == OUR_IMAGE:
            assert "build" in service, f"{name}: our image is built here"
            continue
        assert tag and tag != "latest" and re.match(r"^v?\d+(\.\d+)+", tag), f"{name}: {service['image']} is not pinned"
        assert "$" not in str(service["image"]), f"{name}: the version comes from the file, not the environment"


def test_kafka_is_the_major_version_the_tests_run_on(services: dict[str, dict[str, Any]]) -> None:
    pom = (ROOT / "controlroom" / "data" / "kafka-pom.xml").read_text()
    tested = re.search(r"<kafka.version>([\d.]+)</kafka.version>", pom)
    assert tested is not None
    assert image_name(services["kafka"]) == ("apache/kafka", tested.group(1))


# --- variables and settings ---------------------------------------------------------------------------------------

def test_every_variable_is_in_env_example_and_nothing_else() -> None:
    used = variables(load(COMPOSE)) | variables(load(AIRGAP))
    listed = env_example()
    assert set(used) == set(listed), f"missing: {set(used) - set(listed)}, unused: {set(listed) - set(used)}"
    for secret in SECRETS:  # no default: compose refuses to start without it, and the example holds no real one
        assert used[secret] == ":?", secret
        assert listed[secret].startswith("change-me"), secret


def test_our_services_pass_real_settings_and_all_they_need(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.model_fields)
    for name, service in services.items():
        if not is_ours(service):
            continue
        env = environment(service)
        unknown = {k for k in env if k.lower() not in fields}
        assert not unknown, f"{name}: not settings (typos?): {unknown}"
        missing = (COMMON_SETTINGS | SERVICE_SETTINGS.get(name, set())) - set(env)
        assert not missing, f"{name}: missing {missing}"
    assert environment(services["api"])["EMBEDDED_SINK"] == "false"  # the sink is a service of its own


def test_grafana_gets_every_variable_its_provisioning_reads(services: dict[str, dict[str, Any]]) -> None:
    wanted = set()
    for path in (ROOT / "grafana" / "provisioning").rglob("*.yaml"):
        wanted |= set(re.findall(r"\$__env\{(\w+)\}", path.read_text()))
    assert wanted, "the datasource reads its address and credentials from the environment"
    assert wanted <= set(environment(services["grafana"]))


def test_grafana_plugin_is_pinned_through_preinstall_and_the_airgap_override_installs_nothing(
        services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["grafana"])
    assert "GF_INSTALL_PLUGINS" not in env  # deprecated since Grafana 11.5: the preinstall settings replace it
    plugin, _, version = env["GF_PLUGINS_PREINSTALL_SYNC"].partition("@")
    assert plugin == "grafana-clickhouse-datasource" and re.fullmatch(r"4\.\d+\.\d+", version)
    datasource = (ROOT / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    assert f"type: {plugin}" in datasource
    airgap = load(AIRGAP)["services"]["grafana"]
    assert environment(airgap)["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    assert [t for _s, t in mounts(airgap)] == [f"/var/lib/grafana/plugins/{plugin}"]


# --- the image ----------------------------------------------------------------------------------------------------

def test_the_image_runs_as_a_fixed_user_that_owns_its_data_dir() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert len(user) == 1 and user[0] != "nobody" and not user[0].startswith("0")
    uid = user[0].split(":")[0]
    assert uid.isdigit(), "a numeric uid: a runtime checking runAsNonRoot can verify it"
    text = "\n".join(lines)
    assert f"ARG APP_UID={uid}" in text
    assert re.search(r"mkdir -p /app/data\S* .*&& chown -R \"\$APP_UID:\$APP_UID\" /app/data", text)
    assert text.index("chown -R") < text.index("USER ")  # created as root, before the switch
    install = next(line for line in lines if "pip install" in line)
    assert "[" not in install and "chdb" not in install, "the production image installs no extra"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".cache", "data", "tests", "bench", ".env"} <= ignored


# --- the analyst user ---------------------------------------------------------------------------------------------

def test_the_analyst_profile_is_read_only_yet_takes_the_plugins_timeout(services: dict[str, dict[str, Any]]) -> None:
    path = ROOT / "deploy" / "clickhouse" / "analyst.xml"
    assert (f"./{path.relative_to(ROOT)}", "/etc/clickhouse-server/users.d/analyst.xml") in mounts(
        services["clickhouse"])
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    profile = root.find("profiles/analyst")
    assert profile is not None
    assert profile.findtext("readonly") == "1"  # 2 would let the user change any other setting
    constraints = profile.find("constraints")
    assert constraints is not None
    # the one setting the plugin's client sends (max_execution_time = its queryTimeout + 5 s): changeable, bounded
    assert [c.tag for c in constraints] == ["max_execution_time"]
    timeout = constraints.find("max_execution_time")
    assert timeout is not None and timeout.find("changeable_in_readonly") is not None
    assert int(timeout.findtext("min") or 0) >= 1, "0 means no limit, and passes a MAX"
    datasource = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    json_data = datasource["datasources"][0]["jsonData"]
    assert int(json_data["queryTimeout"]) + 5 <= int(timeout.findtext("max") or 0)
    assert int(profile.findtext("max_execution_time") or 0) <= int(timeout.findtext("max") or 0)
    user = root.find("users/analyst")
    assert user is not None and user.findtext("profile") == "analyst"
    password = user.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_READONLY_PASSWORD"
    assert password.get("from_env") in environment(services["clickhouse"])
    grants = [q.text or "" for q in user.findall("grants/query")]
    assert "GRANT SELECT ON controlroom.*" in grants
    assert all(g.startswith("GRANT SELECT ON ") for g in grants), grants
    assert environment(services["grafana"])["CLICKHOUSE_READONLY_USER"] == "analyst"
    assert json_data["username"] == "$__env{CLICKHOUSE_READONLY_USER}"


def test_the_analyst_grant_never_reaches_the_admin_database(services: dict[str, dict[str, Any]]) -> None:
    """Key hashes, the audit log and subscriptions live in {db}_admin (migration 0011): no grant of the analyst names
    it, nor any database by wildcard, and the database the services use is the one granted."""
    root = ET.parse(ROOT / "deploy" / "clickhouse" / "analyst.xml").getroot()  # noqa: S314 (our own file)
    grants = [q.text or "" for q in root.findall("users/analyst/grants/query")]
    targets = {g.removeprefix("GRANT SELECT ON ").strip() for g in grants}
    assert targets == {"controlroom.*", "system.databases", "system.tables", "system.columns"}, grants
    database = environment(services["api"])["CLICKHOUSE_URL"].rsplit("/", 1)[1]
    assert database == Settings().clickhouse_database == "controlroom"
    admin = admin_database(database)
    assert all(not t.startswith(("*", admin)) for t in targets)
    assert {"api_keys", "audit_log", "subscriptions"} <= ADMIN_TABLES
    migration = (ROOT / "sinks" / "migrations" / "0011_admin_database.sql").read_text()
    assert all(f"RENAME TABLE IF EXISTS {{db}}.{t} TO {{admin}}.{t}" in migration for t in ADMIN_TABLES)
