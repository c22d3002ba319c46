"""docker-compose.yml's Kafka, without Docker: deploy/kafka-compose-start.sh, given the compose file's KAFKA_*
and FANOUT_KAFKA_* values, formats a real storage with the SCRAM users; a real 3.9 broker then starts on
that config (listeners moved to free local ports) and must authenticate every user, refuse strangers and
let only the admin create topics. What Docker alone adds (the image's own start script, which finds the
storage formatted) is not run here."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compose_file import compose_services, resolved_env
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from ports import free_ports

from deploy.servers import java_binary, resolve_classpath
from fanout.settings import Settings

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[dict[str, str]]:
    """The compose broker's environment, with the addresses of the broker this fixture runs."""
    tmp = tmp_path_factory.mktemp("compose-kafka")
    env = resolved_env(compose_services()["kafka"])
    internal, controller, external = free_ports(3)
    env |= {
        "KAFKA_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller},"
                           f"EXTERNAL://127.0.0.1:{external}",
        "KAFKA_ADVERTISED_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller}",
        "KAFKA_LOG_DIRS": str(tmp / "data"),
    }
    classpath = os.pathsep.join(resolve_classpath(settings, "kafka", settings.stack.kafka_version, print))
    java = java_binary()
    (tmp / "bin").mkdir()
    storage_tool = tmp / "bin" / "kafka-storage.sh"
    storage_tool.write_text(f'#!/bin/sh\nexec "{java}" -cp "{classpath}" kafka.tools.StorageTool "$@"\n')
    run = tmp / "run-broker.sh"
    run.write_text(f'#!/bin/sh\nexec "{java}" -Xmx256m -cp "{classpath}" kafka.Kafka "$FANOUT_KAFKA_CONFIG_FILE"\n')
    for script in (storage_tool, run):
        script.chmod(0o755)
    process_env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "KAFKA_HOME": str(tmp), "KAFKA_RUN": str(run),
                   **env}
    with open(tmp / "broker.log", "wb") as log:
        proc = subprocess.Popen(["bash", str(ROOT / "deploy" / "kafka-compose-start.sh")], env=process_env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        env["EXTERNAL"], env["INTERNAL"] = f"127.0.0.1:{external}", f"127.0.0.1:{internal}"
        _wait_ready(_as(env, "ADMIN", env["EXTERNAL"]), proc, tmp / "broker.log")
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _as(env: dict[str, str], who: str, address: str, password: str | None = None) -> dict[str, Any]:
    return {"bootstrap.servers": address, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env[f"FANOUT_KAFKA_{who}_USERNAME"],
            "sasl.password": password if password is not None else env[f"FANOUT_KAFKA_{who}_PASSWORD"]}


def _wait_ready(config: dict[str, Any], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the compose Kafka exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            AdminClient(config).list_topics(timeout=2)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                pytest.fail(f"the compose Kafka is not ready after 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.mark.parametrize("listener", ["EXTERNAL", "INTERNAL"])
@pytest.mark.parametrize("who", ["ADMIN", "SASL", "READER", "WORKER"])
def test_every_user_of_the_compose_file_logs_in(broker: dict[str, str], who: str, listener: str) -> None:
    AdminClient(_as(broker, who, broker[listener])).list_topics(timeout=10)


@pytest.mark.parametrize("who", ["SASL", "READER", "WORKER"])
def test_a_wrong_password_or_none_is_refused(broker: dict[str, str], who: str) -> None:
    with pytest.raises(KafkaException):
        AdminClient(_as(broker, who, broker["EXTERNAL"], password="not-the-password")).list_topics(timeout=3)
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": broker["EXTERNAL"]}).list_topics(timeout=3)


def test_only_the_admin_creates_topics(broker: dict[str, str]) -> None:
    for who in ("SASL", "READER", "WORKER"):
        client = AdminClient(_as(broker, who, broker["EXTERNAL"]))  # held: a dropped client cancels its futures
        with pytest.raises(KafkaException) as info:
            client.create_topics([NewTopic("refused", 1, 1)])["refused"].result(30)
        assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, who
    admin = AdminClient(_as(broker, "ADMIN", broker["EXTERNAL"]))
    assert admin.create_topics([NewTopic("created", 1, 1)])["created"].result(30) is None
    # The controller has committed the topic; the broker's metadata follows a moment later.
    deadline = time.monotonic() + 10
    while "created" not in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "the created topic never appeared in the broker's metadata"
        time.sleep(0.1)
