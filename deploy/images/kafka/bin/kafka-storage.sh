#!/bin/sh
# The storage tool as the official image's bin/kafka-storage.sh runs it.
exec java -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
