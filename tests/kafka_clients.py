"""Kafka clients that are not ours (aiokafka, kcat), configured from Settings as the stack requires:
SASL as one of the deployment's users when it has credentials (Settings.kafka_config), else plaintext."""

from __future__ import annotations

from typing import Any

from fanout.settings import KafkaPrincipal, Settings


def aiokafka_kwargs(s: Settings, principal: KafkaPrincipal = "admin") -> dict[str, Any]:
    """bootstrap_servers and, with a user, the SASL arguments of aiokafka's clients (what Faust passes)."""
    user, password = s.kafka_credentials(principal)
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": user, "sasl_plain_password": password} if user else {}
    return {"bootstrap_servers": s.kafka_bootstrap, **sasl}


def kcat_args(s: Settings, principal: KafkaPrincipal = "admin") -> list[str]:
    """-b and, with a user, -X options for kcat (the same librdkafka names as Settings.kafka_config)."""
    config = s.kafka_config(principal)
    return ["-b", config.pop("bootstrap.servers"), *(arg for k, v in config.items() for arg in ("-X", f"{k}={v}"))]
