#!/usr/bin/env bash
# docker-compose.yml's Kafka (the apache/kafka image): format the storage with the SCRAM users, then hand
# over to the image's own start script. The image formats storage itself but cannot add users (KIP-900's
# `--add-scram` is a storage tool option only), and the users must exist before the first start: the
# brokers log in to each other as the admin. The image's script then finds the storage formatted, which
# it accepts, and starts the broker.
#
# The broker's config is the KAFKA_* variables, read as the image reads them (KAFKA_FOO_BAR -> foo.bar,
# __ -> _, ___ -> -), so the storage tool sees the same config as the broker. The users and passwords are
# the project's FANOUT_KAFKA_{ADMIN,SASL,READER,WORKER}_{USERNAME,PASSWORD} (docker-compose.yml passes them).
# KAFKA_HOME and KAFKA_RUN exist for tests/e2e/test_compose_kafka.py, which runs this without Docker and
# starts the broker from FANOUT_KAFKA_CONFIG_FILE.
set -euo pipefail

kafka_home=${KAFKA_HOME:-/opt/kafka}
mechanism=${FANOUT_KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}
# The storage tool's config, kept for the broker's lifetime (exec skips traps): FANOUT_KAFKA_CONFIG_FILE.
props=$(mktemp)

while IFS= read -r line; do
  name=${line%%=*} value=${line#*=}
  case $name in
    KAFKA_HOME | KAFKA_RUN | KAFKA_VERSION | KAFKA_DEBUG | *_OPTS) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env | grep '^KAFKA_[A-Z0-9_]*=')

users=()
for who in ADMIN SASL READER WORKER; do
  user_var=FANOUT_KAFKA_${who}_USERNAME
  password_var=FANOUT_KAFKA_${who}_PASSWORD
  users+=(--add-scram "${mechanism}=[name=${!user_var},password=${!password_var}]")
done

"$kafka_home/bin/kafka-storage.sh" format --ignore-formatted --cluster-id="$CLUSTER_ID" --config "$props" "${users[@]}"
export FANOUT_KAFKA_CONFIG_FILE=$props
exec ${KAFKA_RUN:-/etc/kafka/docker/run}
