#!/usr/bin/env python3
"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for development and
tests, assembled from Apache Kafka's jars on Maven Central and started with `java`.

    python3 scripts/kafka_broker.py up   [--dir .kafka]   # prints the bootstrap address
    python3 scripts/kafka_broker.py down [--dir .kafka] [--keep]
    python3 scripts/kafka_broker.py restart [--dir .kafka] # stop and start on the same data

The jars are resolved once with Maven into ~/.cache/eventflow/kafka-VERSION (or
$XDG_CACHE_HOME) and reused. Each broker folder gets free loopback ports, its own formatted
KRaft storage, `bootstrap` (host:port), `broker.pid` and `broker.log`. Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

KAFKA_VERSION = os.environ.get("EVENTFLOW_KAFKA_VERSION", "4.1.1")
LOG4J = "2.24.3"
SLF4J = "1.7.36"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eventflow.local</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

BROKER_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.req.name = kafka.request.logger
logger.req.level = WARN
"""

TOOLS_LOG4J = """status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
"""

SERVER = """process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
auto.create.topics.enable=false
"""

JVM = [
    "-Xms512m",
    "-Xmx512m",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "eventflow" / f"kafka-{KAFKA_VERSION}"


def ensure_jars() -> Path:
    """Resolve the broker's classpath with Maven once; later calls reuse the cache."""
    cache = cache_dir()
    libs = cache / "libs"
    if (cache / ".complete").exists():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    # Test workers start their brokers at once: one resolves, the others wait and reuse it.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (cache / ".complete").exists():
            return libs
        return _resolve(cache, libs)


def _resolve(cache: Path, libs: Path) -> Path:
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            sys.exit(f"kafka_broker: `{tool}` is not installed (Java 17+ and Maven are needed)")
    say(f"kafka_broker: resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central ...")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "pom.xml").write_text(POM.format(kafka=KAFKA_VERSION, log4j=LOG4J, slf4j=SLF4J))
    shutil.rmtree(libs, ignore_errors=True)
    done = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(cache / "pom.xml"),
            "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"kafka_broker: maven failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    (cache / "broker-log4j2.properties").write_text(BROKER_LOG4J)
    (cache / "tools-log4j2.properties").write_text(TOOLS_LOG4J)
    (cache / ".complete").write_text(KAFKA_VERSION)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_of(folder: Path) -> int | None:
    try:
        pid = int((folder / "broker.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def configure(folder: Path, libs: Path) -> None:
    """Write server.properties on free ports and format KRaft storage, once per folder."""
    if (folder / "server.properties").exists() and (folder / "data" / "meta.properties").exists():
        return
    shutil.rmtree(folder / "data", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    (folder / "server.properties").write_text(
        SERVER.format(port=port, controller=controller, data=(folder / "data").resolve())
    )
    (folder / "bootstrap").write_text(f"127.0.0.1:{port}\n")
    tool = [
        "java",
        "-Xmx256M",
        f"-Dlog4j2.configurationFile={libs.parent / 'tools-log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
    ]
    cluster = subprocess.run([*tool, "random-uuid"], capture_output=True, text=True, check=True)
    formatted = subprocess.run(
        [
            *tool,
            "format",
            "--standalone",
            "-t",
            cluster.stdout.strip(),
            "-c",
            str(folder / "server.properties"),
        ],
        capture_output=True,
        text=True,
    )
    if formatted.returncode != 0:
        sys.exit(f"kafka_broker: formatting storage failed: {formatted.stderr}")


def up(folder: Path, timeout: float) -> str:
    folder = folder.resolve()
    if pid_of(folder) is not None:
        return (folder / "bootstrap").read_text().strip()
    libs = ensure_jars()
    configure(folder, libs)
    bootstrap = (folder / "bootstrap").read_text().strip()
    log = open(folder / "broker.log", "ab")  # noqa: SIM115 - the broker keeps it
    proc = subprocess.Popen(
        [
            "java",
            *JVM,
            f"-Dkafka.logs.dir={folder / 'logs'}",
            f"-Dlog4j2.configurationFile={libs.parent / 'broker-log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(folder / "server.properties"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (folder / "broker.pid").write_text(str(proc.pid))
    host, port = bootstrap.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (folder / "broker.log").read_text(errors="replace")[-4000:]
            sys.exit(f"kafka_broker: the broker exited ({proc.returncode}):\n{tail}")
        try:
            # The client listener opens only once the broker is unfenced: a valid readiness signal.
            with socket.create_connection((host, int(port)), timeout=0.5):
                return bootstrap
        except OSError:
            time.sleep(0.2)
    down(folder, keep=True)
    sys.exit(f"kafka_broker: not ready after {timeout:.0f}s; see {folder / 'broker.log'}")


def down(folder: Path, keep: bool = False) -> None:
    folder = folder.resolve()
    pid = pid_of(folder)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pid_of(folder) is not None:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if pid_of(folder) is not None:
            os.kill(pid, signal.SIGKILL)
    (folder / "broker.pid").unlink(missing_ok=True)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "restart", "jars"])
    parser.add_argument("--dir", type=Path, default=Path(".kafka"), help="broker folder")
    parser.add_argument("--keep", action="store_true", help="down: keep the data")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="restart: seconds the broker stays down (an outage)",
    )
    args = parser.parse_args()
    if args.command == "jars":
        print(ensure_jars())
    elif args.command == "up":
        print(up(args.dir, args.timeout))
    elif args.command == "restart":
        down(args.dir, keep=True)
        time.sleep(args.pause)
        print(up(args.dir, args.timeout))
    else:
        down(args.dir, keep=args.keep)


if __name__ == "__main__":
    main()
