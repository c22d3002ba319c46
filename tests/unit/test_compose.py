"""Static checks of the Docker side (no Docker engine needed): docker-compose.yml, deploy/Dockerfile,
deploy/prometheus.yml, the Grafana provisioning and dashboard, against the settings and metrics."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from compose_file import cluster_env as _cluster_env
from compose_file import interpolate
from compose_file import resolved_env as _env

from fanout.metrics import Metrics
from fanout.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GRAFANA = DEPLOY / "grafana"

PROJECT_SERVICES = {"migrate": "migrate", "worker": "worker", "notifier": "notifier", "read-api": "read-api",
                    "ingest-api": "ingest-api"}
CLUSTER_SERVICES = {"kafka-2", "kafka-3", "cassandra-2", "cassandra-3"}  # the `cluster` profile
SERVICES = {"kafka", "cassandra", "prometheus", "grafana", *PROJECT_SERVICES, *CLUSTER_SERVICES}
# Counters whose series appear only once something fails: their queries need a zero fallback.
FAILURE_METRICS = ("fanout_dead_lettered_events", "fanout_cassandra_errors", "fanout_cassandra_retries")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dashboard_module() -> ModuleType:
    # Loaded by path: tests/ is not a package, and this must not depend on how pytest sets sys.path.
    spec = importlib.util.spec_from_file_location("dashboard_queries", ROOT / "tests" / "dashboard_queries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load(ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) pairs of the short "[ADDRESS:]HOST:CONTAINER" syntax."""
    pairs = []
    for spec in service.get("ports", []):
        host, container = interpolate(spec).rsplit(":", 1)
        pairs.append((int(host.rsplit(":", 1)[-1]), int(container.split("/")[0])))
    return pairs


# --- docker-compose.yml ------------------------------------------------------------------------------


def test_compose_has_exactly_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_compose_uses_only_fanout_variables_that_settings_defines(services: dict[str, dict[str, Any]]) -> None:
    known = Settings.env_names()
    used = {name for svc in services.values() for name in _env(svc) if name.startswith("FANOUT_")}
    assert used, "the project's services are configured through FANOUT_* variables"
    assert used <= set(known), f"not in fanout/settings.py: {sorted(used - set(known))}"


def test_project_services_run_the_image_and_reach_the_servers(services: dict[str, dict[str, Any]]) -> None:
    defaults = Settings()
    for name, command in PROJECT_SERVICES.items():
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert svc["command"] == [command]
        s = Settings.load(env=_env(svc))
        assert s.host == "0.0.0.0"
        assert s.kafka_bootstrap == f"kafka:{defaults.kafka_port}"
        assert s.cassandra_contact_points == ["cassandra"]
        assert s.cassandra_port == defaults.cassandra_port


def test_project_services_share_one_token_secret(services: dict[str, dict[str, Any]]) -> None:
    project = [name for name, svc in services.items() if svc.get("image") == "fanout:local"]
    assert {"read-api", "ingest-api"} <= set(project)
    for name in project:
        secret = Settings.load(env=_env(services[name])).jwt_secret_path
        assert any(str(secret).startswith(v.split(":")[1] + "/") for v in services[name]["volumes"]), name


def test_published_ports_equal_the_settings_defaults(services: dict[str, dict[str, Any]]) -> None:
    s = Settings()
    expected = {
        "kafka": s.kafka_port,  # the host's port; the container side is the EXTERNAL listener
        "kafka-2": 9192,  # the cluster profile's other brokers, each with an EXTERNAL listener of its own
        "kafka-3": 9292,
        "cassandra": s.cassandra_port,
        "prometheus": s.stack.prometheus_port,
        "read-api": s.read_api_port,
        "ingest-api": s.ingest_api_port,
        "grafana": 3000,
    }
    published = {name: [host for host, _ in _published(svc)] for name, svc in services.items() if svc.get("ports")}
    assert published == {name: [port] for name, port in expected.items()}
    for name, svc in services.items():
        if not name.startswith("kafka"):
            assert [host for host, container in _published(svc) if host != container] == [], name
    # The workers scale (`--scale worker=N`), so no host port of theirs: Prometheus finds them by name.
    assert "ports" not in services["worker"]


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            assert interpolate(spec).startswith("127.0.0.1:"), (name, spec)


def test_kafka_is_one_kraft_node_on_the_settings_ports(services: dict[str, dict[str, Any]]) -> None:
    s = Settings()
    kafka = services["kafka"]
    env = _env(kafka)
    assert interpolate(kafka["image"]) == f"apache/kafka:{s.stack.kafka_version}"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    listeners = _listeners(env["KAFKA_LISTENERS"])
    assert listeners["SASL_PLAINTEXT"] == ("", s.kafka_port)
    assert listeners["CONTROLLER"] == ("", s.stack.kafka_controller_port)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "SASL_PLAINTEXT"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:{s.stack.kafka_controller_port}"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG"):
        assert env[f"KAFKA_{name}_REPLICATION_FACTOR"] == "1"
    assert f"-Xmx{s.stack.kafka_heap}" in env["KAFKA_HEAP_OPTS"].split()


def _listeners(spec: str) -> dict[str, tuple[str, int]]:
    """NAME://host:port,... as {NAME: (host, port)}."""
    pairs = (item.split("://", 1) for item in spec.split(","))
    return {name: (address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])) for name, address in pairs}


def test_kafka_is_reachable_from_the_containers_and_from_the_host(services: dict[str, dict[str, Any]]) -> None:
    """Clients connect to the advertised address: containers must get kafka:9092, host clients an address
    the host reaches, on the port published for the EXTERNAL listener (the settings' default)."""
    s = Settings()
    kafka = services["kafka"]
    env = _env(kafka)
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == {"SASL_PLAINTEXT", "CONTROLLER", "EXTERNAL"}
    # Every listener authenticates (no PLAINTEXT protocol anywhere).
    assert set(protocols.values()) == {"SASL_PLAINTEXT"} and set(protocols) == set(listeners)
    assert advertised == {"SASL_PLAINTEXT": ("kafka", s.kafka_port), "EXTERNAL": ("127.0.0.1", s.kafka_port)}
    # What the project's containers bootstrap with is the internal listener.
    host, port = advertised["SASL_PLAINTEXT"]
    assert Settings.load(env=_env(services["worker"])).kafka_bootstrap == f"{host}:{port}"
    # The host's port leads to the EXTERNAL listener, and only there.
    assert _published(kafka) == [(advertised["EXTERNAL"][1], listeners["EXTERNAL"][1])]
    assert listeners["EXTERNAL"][1] not in (s.kafka_port, s.stack.kafka_controller_port)


def test_cassandra_image_heap_and_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    s = Settings()
    cassandra = services["cassandra"]
    assert interpolate(cassandra["image"]) == f"cassandra:{s.stack.cassandra_version}"
    env = _env(cassandra)
    assert {k: env[k] for k in ("MAX_HEAP_SIZE", "HEAP_NEWSIZE", "CASSANDRA_SEEDS")} == {
        "MAX_HEAP_SIZE": s.stack.cassandra_heap, "HEAP_NEWSIZE": "200M", "CASSANDRA_SEEDS": "cassandra"}
    assert "cqlsh" in " ".join(cassandra["healthcheck"]["test"])


def test_migrate_runs_once_before_the_services(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"] == {
        "cassandra": {"condition": "service_healthy"},
        "kafka": {"condition": "service_started"},
        "cassandra-3": {"condition": "service_healthy", "required": False},  # only with the cluster profile
    }
    assert services["migrate"]["restart"] == "no"
    for name in ("worker", "read-api", "ingest-api"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_the_cluster_profile_is_three_brokers_and_three_nodes_replicated_three_times(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _cluster_env()
    brokers = {name: _env(services[name], env) for name in ("kafka", "kafka-2", "kafka-3")}
    voters = {f"{b['KAFKA_NODE_ID']}@{name}:{Settings().stack.kafka_controller_port}" for name, b in brokers.items()}
    for name, broker in brokers.items():
        assert set(broker["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert _listeners(broker["KAFKA_ADVERTISED_LISTENERS"])["SASL_PLAINTEXT"][0] == name
        assert broker["CLUSTER_ID"] == brokers["kafka"]["CLUSTER_ID"], name
        assert broker["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3" and broker["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert {name for name, svc in services.items() if svc.get("profiles") == ["cluster"]} == CLUSTER_SERVICES
    for name in ("cassandra", "cassandra-2", "cassandra-3"):
        assert _env(services[name], env)["CASSANDRA_SEEDS"] == "cassandra,cassandra-2"
    s = Settings.load(env=_env(services["worker"], env))
    assert s.stack.nodes == 3 and s.topic_replicas == 3 and s.min_insync_replicas == 2
    assert "'replication_factor': 3" in s.keyspace_replication
    assert s.kafka_bootstrap == "kafka:9092,kafka-2:9092,kafka-3:9092"
    assert s.cassandra_contact_points == ["cassandra", "cassandra-2", "cassandra-3"]
    # Without the env file, the same file is the single broker and node.
    single = Settings.load(env=_env(services["worker"]))
    assert single.stack.nodes == 1 and single.topic_replicas == 1 and single.cassandra_contact_points == ["cassandra"]


# --- deploy/Dockerfile -------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_installs_this_package_and_runs_fanout() -> None:
    instructions = _instructions(DEPLOY / "Dockerfile")
    # The official Python image unless BASE names another (the local Debian base, deploy/images.py).
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim")
    assert [args for op, args in instructions if op == "FROM"] == ["${BASE} AS build", "${BASE}"]
    assert ("COPY", ". /app") in instructions
    runs = [args.split() for op, args in instructions if op == "RUN"]
    assert any("pip" in r and "install" in r and "/app" in r for r in runs)
    entrypoints = [json.loads(args) for op, args in instructions if op == "ENTRYPOINT"]
    assert entrypoints == [["fanout"]]


def test_image_installs_the_product_without_the_bench_extra() -> None:
    installs = [args for op, args in _instructions(DEPLOY / "Dockerfile") if op == "RUN" and "pip install" in args]
    assert installs and not any("[" in args for args in installs), installs  # no extras: no matplotlib
    # The benchmarks' own dependencies stay out of the product's.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert "matplotlib" not in required
    assert any(dep.startswith("matplotlib") for dep in project["optional-dependencies"]["bench"])


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".fanout"} <= ignored


# --- deploy/prometheus.yml ---------------------------------------------------------------------------


def test_prometheus_jobs_match_the_local_template_and_compose(services: dict[str, dict[str, Any]]) -> None:
    template = (DEPLOY / "templates" / "prometheus.yml").read_text()
    template_jobs = {job["job_name"]: job for job in yaml.safe_load(template)["scrape_configs"]}
    compose_jobs = {job["job_name"]: job for job in _load(DEPLOY / "prometheus.yml")["scrape_configs"]}
    assert list(compose_jobs) == list(template_jobs)

    s = Settings()
    for name, job in compose_jobs.items():
        if "dns_sd_configs" in job:  # every replica of a scaled service, found by its name
            [sd] = job["dns_sd_configs"]
            [host] = sd["names"]
            target = f"{host}:{sd['port']}"
        else:
            [target] = job["static_configs"][0]["targets"]
        [template_target] = template_jobs[name]["static_configs"][0]["targets"]
        host, port = target.rsplit(":", 1)
        port_setting = template_target.rsplit(":", 1)[1].strip("${}")
        assert int(port) == getattr(s.stack if port_setting == "prometheus_port" else s, port_setting), name
        assert host in services or (name == "prometheus" and host == "localhost"), name


# --- Grafana -----------------------------------------------------------------------------------------


def test_grafana_provisions_the_prometheus_datasource_and_dashboards(services: dict[str, dict[str, Any]]) -> None:
    [datasource] = _load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{Settings().stack.prometheus_port}"

    [provider] = _load(GRAFANA / "provisioning" / "dashboards" / "fanout.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def _known_metric_names() -> set[str]:
    """Every series name the project's metrics can expose, with prometheus_client's suffixes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboard_panels_all_query_prometheus() -> None:
    module = _dashboard_module()
    panels = module.dashboard()["panels"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert any(t.get("expr") for t in panel.get("targets", [])), panel["title"]
    assert len(module.dashboard_queries()) == sum(len(p["targets"]) for p in panels)


def test_dashboard_queries_use_existing_metrics_and_1m_windows() -> None:
    known = _known_metric_names()
    queries = _dashboard_module().dashboard_queries()
    used = {name for q in queries for name in re.findall(r"\bfanout_\w+", q)}
    assert used, "the dashboard shows the project's metrics"
    assert used <= known, f"not defined in fanout/metrics.py: {sorted(used - known)}"
    for q in queries:
        assert set(re.findall(r"\[([^\]]+)\]", q)) <= {"1m"}, q


def test_failure_queries_return_a_series_at_zero() -> None:
    # The e2e test requires data from every query after a clean workload, where nothing failed.
    for q in _dashboard_module().dashboard_queries():
        if any(m in q for m in FAILURE_METRICS):
            assert q.endswith("or on() vector(0)"), q
