"""Redis beyond one server, each started for real on loopback: Sentinel (with the WAIT
safeguard), a three-master Cluster, and TLS with an ACL user and a password."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from coordinator import Lease
from coordinator.cli.local_redis import debian_or_path_tool, free_cluster_port
from coordinator.connection.backend import connect
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.state import Role
from coordinator.protocol import keys
from coordinator.protocol.membership import Heartbeat, list_controllers
from coordinator.settings import load_settings
from coordinator.watching.status import cluster_status
from tests.processes import coordinator, daemons
from tests.redis_server import RedisServer, free_port, redis_server_binary, running_redis

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server binary (apt-get install redis-server)")]

FAST = {"lease_ttl": 2, "renew_interval": 0.5, "heartbeat_interval": 0.5}
# a master that starts a replica's full sync at once: Redis 7 waits repl-diskless-sync-delay
# (5 s) for more replicas to share one transfer, a wait only these tests' set-up would pay
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


@contextlib.contextmanager
def sentinel_for(master: RedisServer, workdir: Path) -> Iterator[int]:
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 400\n"
        "sentinel failover-timeout mymaster 3000\n")
    binary = redis_server_binary()
    assert binary is not None
    process = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            with contextlib.suppress(redis.RedisError):
                if client.sentinel_master("mymaster").get("num-slaves", 0) >= 1:
                    break
            time.sleep(0.05)
        client.close()
        yield port
    finally:
        process.kill()
        process.wait()


def wait_until(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return True
        time.sleep(0.05)
    return False


def test_daemons_re_elect_through_a_sentinel_failover(tmp_path: Path) -> None:
    with running_redis() as master, running_redis(
        "--replicaof", "127.0.0.1", str(0)) as replica:
        r = redis.Redis(port=replica.port)
        r.replicaof("127.0.0.1", master.port)
        assert wait_until(lambda: r.info("replication")["master_link_status"] == "up", 10)
        with sentinel_for(master, tmp_path) as sentinel_port, daemons(
            "redis://127.0.0.1:1/0", ["a", "b"], tmp_path,
            COORDINATOR_REDIS_SENTINELS=f"127.0.0.1:{sentinel_port}") as procs:
            m = redis.Redis(port=master.port)
            assert wait_until(lambda: m.hget("{coordinator}:lease:global", "holder_id"), 10)
            term_before = int(m.hget("{coordinator}:tenure:global", "term") or 0)
            time.sleep(0.6)  # a renewal or two replicated
            master.process.kill()
            master.process.wait()
            promoted = wait_until(lambda: r.info("replication")["role"] == "master", 15)
            assert promoted, "sentinel did not promote the replica"
            assert wait_until(lambda: r.hget("{coordinator}:lease:global", "holder_id"), 10)
            term_after = int(r.hget("{coordinator}:tenure:global", "term") or 0)
            assert term_after >= term_before >= 1
            time.sleep(1.0)
            assert all(d.process.poll() is None for d in procs.values())
            sentinel_env = {"COORDINATOR_REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}"}
            # the sentinel may still be finishing the failover (no master to name): a
            # status command then exits 1, and succeeds once it names the new master
            end = time.monotonic() + 15
            while True:
                done = coordinator("status", "--json", redis_url="redis://127.0.0.1:1/0",
                                   **sentinel_env)
                if done.returncode == 0 or time.monotonic() > end:
                    break
                assert done.returncode == 1 and "No master found" in done.stderr, done.stderr
                time.sleep(0.2)
            assert done.returncode == 0, done.stderr
        r.close()


async def test_wait_safeguard_refuses_to_lead_on_a_lease_no_replica_has(tmp_path: Path) -> None:
    with running_redis(*NO_SYNC_DELAY) as master, running_redis() as replica:
        r = redis.Redis(port=replica.port)
        r.replicaof("127.0.0.1", master.port)
        assert wait_until(lambda: r.info("replication")["master_link_status"] == "up", 10)
        # "up" can come before the replica answers WAIT within the daemon's 0.1 s (a loaded
        # machine, the sync just done): the start below needs a replica that acknowledges
        m = redis.Redis(port=master.port)
        assert wait_until(lambda: m.set("synced", 1) and m.execute_command("WAIT", 1, 1000) == 1, 10)
        m.close()
        settings = load_settings(node_id="a", redis_url=master.url, min_replicas_ack=1,
                                 replica_ack_timeout=0.1, **FAST)
        client = connect(settings)
        daemon = Daemon(settings, redis=client)
        await daemon.start()
        try:
            assert daemon.state.role is Role.LEADER
            result = await daemon.lease.acquire(wait_replicas=1, wait_timeout_ms=100)
            assert result.replicas_acked == 1
            replica.stop()
            await asyncio.sleep(0.2)
            for _ in range(settings.renew_failure_threshold):
                await daemon.lease_step()
            assert daemon.state.role is Role.DEGRADED and not daemon.can_schedule()
            assert "replicas acknowledged" in (daemon.state.last_error or "")
        finally:
            await daemon.stop()
            await client.aclose()
        r.close()


@contextlib.contextmanager
def three_master_cluster() -> Iterator[list[RedisServer]]:
    args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000")
    ports = [free_cluster_port() for _ in range(3)]
    with running_redis(*args, port=ports[0]) as a, running_redis(
            *args, port=ports[1]) as b, running_redis(
            *args, port=ports[2]) as c:
        nodes = [a, b, c]
        created = subprocess.run(
            [debian_or_path_tool("redis-cli") or "redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-yes"],
            capture_output=True, text=True, timeout=30, check=False)
        assert created.returncode == 0, created.stdout + created.stderr
        clients = [redis.Redis(port=n.port) for n in nodes]
        assert wait_until(lambda: all(
            cl.cluster("info")["cluster_state"] == "ok" for cl in clients), 15)
        for cl in clients:
            cl.close()
        yield nodes


async def test_lease_membership_and_daemon_work_on_a_real_cluster() -> None:
    with three_master_cluster() as nodes:
        settings = load_settings(node_id="a", redis_url=nodes[0].url, redis_cluster=True, **FAST)
        client = connect(settings)
        try:
            lease = Lease(client, holder_id="x", ttl=2)
            got = await lease.acquire()
            assert got.operation == "acquire" and got.term >= got.record.acquired_at
            assert (await lease.acquire()).operation == "renew"
            fenced = keys.fenced_key("coordinator", "report")
            assert (await lease.fenced_set(fenced, "v", got.term)).accepted
            assert (await lease.release(term=got.term)).released
            beat = Heartbeat(client, namespace="coordinator", node_id="x", host="h",
                             role="standby", priority=50, version="1", instance_id="i",
                             interval=0.5, retention=60)
            await beat.beat()
            assert [c.node_id for c in await list_controllers(client, "coordinator",
                                                              retention_ms=60_000)] == ["x"]
            daemon = Daemon(settings, redis=client)
            await daemon.start()
            try:
                assert daemon.state.role is Role.LEADER and (daemon.state.term or 0) > got.term
                status = await cluster_status(client, settings)
                assert status["lease"]["holder_id"] == "a"
            finally:
                await daemon.stop()
            assert await lease.get() is None
        finally:
            await client.aclose()


def test_cluster_with_replica_acknowledgement_is_refused_before_touching_redis() -> None:
    # Once a traceback at start and a restart loop: the renew's WAIT went down a pipeline,
    # which redis-py refuses in cluster mode (and WAIT, carrying no key, would have gone to
    # a node other than the lease's master). Now the settings refuse the pair, exit 2.
    with three_master_cluster() as nodes:
        done = coordinator("run", redis_url=nodes[0].url, timeout=20,
                           COORDINATOR_REDIS_CLUSTER="true", COORDINATOR_MIN_REPLICAS_ACK="1",
                           COORDINATOR_NODE_ID="a")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "COORDINATOR_MIN_REPLICAS_ACK" in done.stderr
        assert "COORDINATOR_REDIS_CLUSTER" in done.stderr
        assert "Traceback" not in done.stderr
        assert all(redis.Redis(port=n.port).dbsize() == 0 for n in nodes)  # nothing touched


def make_certificates(directory: Path) -> dict[str, Path]:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    for name in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (directory / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
    return {n: directory / n for n in ("ca.crt", "server.crt", "server.key", "client.crt",
                                       "client.key")}


def test_tls_with_client_certificates_and_an_acl_user(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    port = free_port()
    binary = redis_server_binary()
    assert binary is not None
    server = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(files["server.crt"]), "--tls-key-file", str(files["server.key"]),
         "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "yes",
         "--user", "coord", "on", ">s3cret-pw", "~*", "&*", "+@all", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tls = {"COORDINATOR_TLS_CA_FILE": str(files["ca.crt"]),
           "COORDINATOR_TLS_CERT_FILE": str(files["client.crt"]),
           "COORDINATOR_TLS_KEY_FILE": str(files["client.key"])}
    url = f"rediss://coord:s3cret-pw@127.0.0.1:{port}/0"
    try:
        client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(files["ca.crt"]),
                             ssl_certfile=str(files["client.crt"]),
                             ssl_keyfile=str(files["client.key"]),
                             username="coord", password="s3cret-pw")
        assert wait_until(client.ping, 10)
        with daemons(url, ["a", "b"], tmp_path, **tls) as procs:
            assert wait_until(lambda: client.hget("{coordinator}:lease:global", "holder_id"), 10)
            done = coordinator("status", "--json", redis_url=url, **tls)
            assert done.returncode == 0, done.stderr
            assert "s3cret" not in done.stdout + done.stderr
            time.sleep(0.5)
            logs = "".join(d.log_path.read_text() for d in procs.values())
            assert "s3cret" not in logs and "daemon.started" in logs
        no_cert = coordinator("status", redis_url=url,
                              COORDINATOR_TLS_CA_FILE=str(files["ca.crt"]))
        assert no_cert.returncode == 1 and "s3cret" not in no_cert.stderr
        client.close()
    finally:
        server.kill()
        server.wait()
