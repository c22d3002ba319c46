"""Start Cassandra in the container: render the local stack's cassandra.yaml for this container's address,
then exec the JVM with the local stack's flags (jvm.options) and the official image's variables."""

import os
import shlex
import socket
from string import Template

HOME = "/opt/cassandra"
CONFIG = "/etc/cassandra/cassandra.yaml"

ip = socket.gethostbyname(socket.gethostname())
seeds = os.environ.get("CASSANDRA_SEEDS") or ip
with open(f"{HOME}/cassandra.yaml.template") as template:
    # Seeds are names the compose network resolves; a node that is a seed itself never bootstraps, the
    # others join by bootstrapping (one at a time: docker-compose.yml's depends_on), as the official image.
    text = Template(template.read()).substitute(host=ip, port=9042, storage_port=7000, seeds=seeds, cluster="")
# Clients in other containers and on published ports, and the healthcheck's cqlsh on 127.0.0.1.
text = text.replace(f"rpc_address: {ip}", f"rpc_address: 0.0.0.0\nbroadcast_rpc_address: {ip}")
with open(CONFIG, "w") as out:
    out.write(text)

heap = os.environ.get("MAX_HEAP_SIZE", "1G")
argv = ["java", f"-Xms{heap}", f"-Xmx{heap}", f"@{HOME}/jvm.options", f"-Dcassandra.config=file://{CONFIG}",
        *shlex.split(os.environ.get("JVM_EXTRA_OPTS", "")),
        "-cp", f"{HOME}/lib/*", "org.apache.cassandra.service.CassandraDaemon"]
os.execvp("java", argv)
