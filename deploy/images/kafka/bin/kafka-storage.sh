#!/bin/sh
# The storage tool as the official image's bin/kafka-storage.sh runs it.
exec java -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
