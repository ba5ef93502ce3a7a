"""The files under deploy/, each checked by the checker this machine has for it."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
import yaml
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from coordinator import CoordinatorError, Lease
from coordinator.daemon.daemon import Daemon
from coordinator.protocol import functions
from coordinator.settings import ENV_PREFIX, Settings, load_settings
from coordinator.watching.status import cluster_status
from tests.redis_server import free_port, redis_server_binary, running_redis

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
UNIT = DEPLOY / "systemd" / "coordinator.service"
ENV_FILE = DEPLOY / "systemd" / "coordinator.env"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kube_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in KUBERNETES for d in documents(p)}


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (no quoting used here)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value for key, value in pairs}


def compose_environments() -> dict[str, dict[str, str]]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: {k: str(v) for k, v in s["environment"].items()}
            for name, s in services.items() if name.startswith("node-")}


def with_compose_defaults(value: str) -> str:
    """``${VAR:-default}`` replaced by its default, as compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def acl_user_line() -> list[str]:
    lines = REDIS_CONF.read_text().splitlines()
    (line,) = [ln for ln in lines if ln.startswith("user coordinator ")]
    return line.split()[1:]


def acl_password_hash() -> str:
    (rule,) = [r for r in acl_user_line() if r.startswith("#")]
    return rule[1:]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Load Settings as the daemon would from exactly ``env``; every name must be a setting."""
    for name in list(Settings.model_fields):
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)
    for key, value in env.items():
        assert key.startswith(ENV_PREFIX), key
        assert key.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, f"unknown {key}"
        monkeypatch.setenv(key, value)
    return load_settings()


# ---- Kubernetes ---------------------------------------------------------------------------

def test_kubernetes_manifests_validate_against_the_api_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for obj in kube_objects().values():
        kubernetes_validate.validate(obj, version, strict=True)  # raises on any unknown field
    assert set(kube_objects()) == {
        ("ConfigMap", "coordinator-config"), ("Secret", "coordinator-redis"),
        ("Secret", "coordinator-redis-admin"), ("DaemonSet", "coordinator"),
        ("ConfigMap", "coordinator-redis-config"),
        ("PersistentVolumeClaim", "coordinator-redis-data"),
        ("Deployment", "coordinator-redis"), ("Service", "coordinator-redis"),
    }


def test_kubernetes_validation_is_strict_enough_to_catch_a_typo() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = kube_objects()[("DaemonSet", "coordinator")]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_probes_hit_the_endpoints_on_the_configured_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = kube_objects()
    config = objects[("ConfigMap", "coordinator-config")]["data"]
    secret = objects[("Secret", "coordinator-redis")]["stringData"]
    deployment = objects[("DaemonSet", "coordinator")]
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    settings = settings_from({**config, **secret, "COORDINATOR_NODE_ID": "pod-0"}, monkeypatch)
    assert settings.http_host == "0.0.0.0"  # the kubelet probes the pod's IP
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    paths = {}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[kind]["httpGet"]
        assert ports[get["port"]] == settings.http_port
        paths[kind] = get["path"]
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                     "readinessProbe": "/readyz"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(settings.http_port)
    assert {e["name"] for e in container["env"]} == {"COORDINATOR_NODE_ID", "COORDINATOR_HOST"}
    assert urlsplit(settings.redis_url.get_secret_value()).hostname == "coordinator-redis"


def test_kubernetes_runs_one_daemon_per_node_named_after_the_node() -> None:
    daemons = kube_objects()[("DaemonSet", "coordinator")]
    assert "replicas" not in daemons["spec"]
    (container,) = daemons["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    # the node's name survives a pod restart; the pod's name (metadata.name) does not
    assert env["COORDINATOR_NODE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert not any(kind == "Deployment" and name == "coordinator" for kind, name in kube_objects())


def test_kubernetes_installs_the_functions_before_each_daemon_as_the_installer_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = kube_objects()
    pod = objects[("DaemonSet", "coordinator")]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["args"] == ["redis", "install-functions"]
    assert init["image"] == pod["containers"][0]["image"]  # the same version's library
    secrets = {s["secretRef"]["name"] for s in init["envFrom"] if "secretRef" in s}
    assert secrets == {"coordinator-redis-admin"}
    daemon_secrets = {s["secretRef"]["name"] for s in pod["containers"][0]["envFrom"]
                      if "secretRef" in s}
    assert "coordinator-redis-admin" not in daemon_secrets  # the daemon never holds it
    url = urlsplit(objects[("Secret", "coordinator-redis-admin")]["stringData"][
        "COORDINATOR_REDIS_ADMIN_URL"])
    admin_line = next(line for line in REDIS_CONF.read_text().splitlines()
                      if line.startswith("user coordinator-admin "))
    (rule,) = [r for r in admin_line.split() if r.startswith("#")]
    assert url.username == "coordinator-admin" and url.hostname == "coordinator-redis"
    assert hashlib.sha256((url.password or "").encode()).hexdigest() == rule[1:]
    config = objects[("ConfigMap", "coordinator-config")]["data"]
    settings_from(dict(config), monkeypatch)  # the init container's settings are valid too


def test_kubernetes_redis_serves_the_shipped_config_on_its_service() -> None:
    objects = kube_objects()
    assert objects[("ConfigMap", "coordinator-redis-config")]["data"]["redis.conf"] == (
        REDIS_CONF.read_text())
    service = objects[("Service", "coordinator-redis")]["spec"]
    pod = objects[("Deployment", "coordinator-redis")]["spec"]["template"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert service["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["args"] == ["redis-server", mounts["config"] + "/redis.conf"]
    assert mounts["data"] == "/data"  # the image's working directory, where the AOF goes


# ---- docker compose, Dockerfile ------------------------------------------------------------

def test_compose_file_follows_the_compose_specification() -> None:
    pytest.importorskip("check_jsonschema")
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_redis_with_the_config_and_three_distinct_daemons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"redis", "functions", "node-1", "node-2", "node-3"}
    redis_volumes = services["redis"]["volumes"]
    assert "./redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis_volumes
    assert services["redis"]["command"][-1] == "/usr/local/etc/redis/redis.conf"
    loaded = {name: settings_from({k: with_compose_defaults(v) for k, v in env.items()},
                                  monkeypatch)
              for name, env in compose_environments().items()}
    assert len({s.node_id for s in loaded.values()}) == 3
    assert [s.role for s in loaded.values()].count("primary") == 1
    for name, settings in loaded.items():
        service = services[name]
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert f"127.0.0.1:{settings.http_port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert settings.http_host == "0.0.0.0"  # published ports reach the container's address
        assert urlsplit(settings.redis_url.get_secret_value()).hostname == "redis"
        assert service["depends_on"]["functions"]["condition"] == "service_completed_successfully"


def test_compose_installs_the_functions_as_the_installer_user_before_the_daemons() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    installer = services["functions"]
    assert installer["command"] == ["redis", "install-functions"]
    assert installer["depends_on"]["redis"]["condition"] == "service_healthy"
    url = urlsplit(with_compose_defaults(installer["environment"]["COORDINATOR_REDIS_ADMIN_URL"]))
    assert url.hostname == "redis" and url.username == "coordinator-admin"
    admin_line = next(line for line in REDIS_CONF.read_text().splitlines()
                      if line.startswith("user coordinator-admin "))
    (rule,) = [r for r in admin_line.split() if r.startswith("#")]
    assert hashlib.sha256((url.password or "").encode()).hexdigest() == rule[1:]


def test_dockerfile_copies_only_files_that_exist_and_exposes_the_port() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    root = DEPLOY.parent
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    assert "EXPOSE 9180" in dockerfile and "COORDINATOR_HTTP_PORT=9180" in dockerfile


def test_every_example_password_is_the_one_whose_hash_the_acl_holds() -> None:
    urls = [
        env_file(ENV_FILE)["COORDINATOR_REDIS_URL"],
        kube_objects()[("Secret", "coordinator-redis")]["stringData"]["COORDINATOR_REDIS_URL"],
        *(with_compose_defaults(env["COORDINATOR_REDIS_URL"])
          for env in compose_environments().values()),
    ]
    for url in urls:
        parts = urlsplit(url)
        assert parts.username == "coordinator"
        assert hashlib.sha256((parts.password or "").encode()).hexdigest() == acl_password_hash()


# ---- systemd ------------------------------------------------------------------------------

def test_systemd_env_file_holds_only_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(env_file(ENV_FILE), monkeypatch)
    assert settings.http_host == "127.0.0.1" and settings.http_port == 9180


def test_systemd_unit_restarts_on_failure_and_is_sandboxed() -> None:
    directives = [line.split("=", 1) for line in UNIT.read_text().splitlines()
                  if "=" in line and not line.startswith("#")]
    unit = dict(directives)
    assert unit["Restart"] == "on-failure" and unit["RestartPreventExitStatus"] == "2"
    assert unit["EnvironmentFile"] == "/etc/coordinator/coordinator.env"
    assert unit["ExecStart"].endswith("/coordinator run")
    sandbox = {"NoNewPrivileges": "yes", "DynamicUser": "yes", "ProtectSystem": "strict",
               "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": ""}
    for key, value in sandbox.items():
        assert unit[key] == value, key


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this interpreter: verify refuses a missing binary,
    and /opt/coordinator exists only where the unit is installed."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (Debian package: systemd)")
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -m coordinator run",
                  UNIT.read_text())
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_systemd_unit_passes_systemd_analyze_verify(checkable_unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(checkable_unit)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_systemd_unit_exposure_stays_low(checkable_unit: Path) -> None:
    # --threshold is on systemd's internal 0-100 scale: 20 is an exposure level of 2.0
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(checkable_unit)],
        capture_output=True, text=True, check=False)
    if "unrecognized option" in done.stderr:
        pytest.skip("this systemd-analyze cannot score a unit file offline (needs systemd >= 250)")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# ---- Redis config and ACL, on a real redis-server -----------------------------------------

PASSWORD = "change-me-coordinator-password"  # the placeholder; its hash is in redis.conf
ADMIN_PASSWORD = "change-me-coordinator-admin-password"  # the installer user's placeholder
BURN_CPU = "local i = 0 while i < 3000000 do i = i + 1 end return i"  # Lua of one's own


@dataclass
class AclRedis:
    port: int
    workdir: Path


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[AclRedis]:
    """A redis-server started from deploy/redis/redis.conf (port, bind and dir overridden)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="coordinator-acl-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, str(REDIS_CONF), "--port", str(port), "--bind", "127.0.0.1", "--dir",
         str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis_sync.Redis(port=port, username="coordinator", password=PASSWORD,
                              socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_sync.ConnectionError:
                if process.poll() is not None:
                    pytest.fail("redis-server refused deploy/redis/redis.conf: "
                                + (process.stderr.read() if process.stderr else b"").decode())
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        install_functions(port)
        yield AclRedis(port, workdir)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


def user_url(port: int) -> str:
    return f"redis://coordinator:{PASSWORD}@127.0.0.1:{port}/0"


def admin_url(port: int) -> str:
    return f"redis://coordinator-admin:{ADMIN_PASSWORD}@127.0.0.1:{port}/0"


def install_functions(port: int) -> subprocess.CompletedProcess[str]:
    """`coordinator redis install-functions` as the operator runs it: the admin URL in the
    environment, the daemon's settings (the runtime user's URL) otherwise."""
    from tests.processes import coordinator_env

    env = {**coordinator_env(user_url(port)), "COORDINATOR_REDIS_ADMIN_URL": admin_url(port)}
    done = subprocess.run([sys.executable, "-m", "coordinator", "redis", "install-functions"],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_acl_rules_are_accepted_by_acl_setuser_too() -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    name, *rules = acl_user_line()
    with running_redis() as server:
        admin = redis_sync.Redis(port=server.port)
        user = redis_sync.Redis(port=server.port, username=name, password=PASSWORD)
        try:
            assert admin.execute_command("ACL", "SETUSER", name, "reset", *rules) == b"OK"
            with pytest.raises(redis_sync.ResponseError, match="Function not found"):
                user.fcall("no_such_function", 0)  # allowed, merely unknown
            with pytest.raises(NoPermissionError):
                user.evalsha("0" * 40, 0)
            with pytest.raises(NoPermissionError):
                user.flushall()
        finally:
            user.close()
            admin.close()


def test_config_turns_on_aof_and_locks_out_the_default_user(acl_redis: AclRedis) -> None:
    # Redis 7 keeps a multi-part AOF in a directory, Redis 6.2 one file
    aof = acl_redis.workdir / "appendonlydir", acl_redis.workdir / "appendonly.aof"
    assert any(path.exists() for path in aof)
    anonymous = redis_sync.Redis(port=acl_redis.port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis_sync.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()
    user = redis_sync.Redis.from_url(user_url(acl_redis.port))
    try:
        with pytest.raises(NoPermissionError):
            user.config_get("appendonly")  # not even the coordinator user may read config
    finally:
        user.close()


def test_the_acl_user_cannot_run_lua_of_its_own(acl_redis: AclRedis) -> None:
    """A leaked runtime password must not run arbitrary Lua: one loop would make every
    client of the server get BUSY, and that user may not SCRIPT KILL it."""
    user = redis_sync.Redis.from_url(user_url(acl_redis.port), socket_timeout=10)
    try:
        attempts: list[tuple[str, Any]] = [
            ("EVAL", lambda: user.eval(BURN_CPU, 0)),
            ("EVAL_RO", lambda: user.execute_command("EVAL_RO", BURN_CPU, 0)),
            ("SCRIPT LOAD", lambda: user.script_load(BURN_CPU)),
            ("EVALSHA", lambda: user.evalsha(hashlib.sha1(BURN_CPU.encode()).hexdigest(), 0)),
            ("FUNCTION LOAD", lambda: user.function_load(
                "#!lua name=mine\nredis.register_function('burn', function() "
                + BURN_CPU + " end)")),
            ("FUNCTION DELETE", lambda: user.function_delete(functions.library_name())),
            ("FUNCTION FLUSH", lambda: user.function_flush()),
        ]
        ran = []
        for name, attempt in attempts:
            try:
                attempt()
                ran.append(name)
            except NoPermissionError:
                pass
            except redis_sync.ResponseError as e:  # e.g. NOSCRIPT: allowed, merely unknown
                ran.append(f"{name} ({e})")
        assert ran == [], f"the runtime user may run its own Lua with: {ran}"
        # what it may call is the product's own functions
        assert user.fcall(functions.function_name("version"), 0).decode() == (
            functions.library_digest())
    finally:
        user.close()


async def test_the_acl_user_runs_the_lease_but_cannot_leave_its_namespace(
    acl_redis: AclRedis,
) -> None:
    client = aioredis.Redis.from_url(user_url(acl_redis.port))
    try:
        lease = Lease(client, holder_id="n1", ttl=5, namespace="coordinator")
        result = await lease.acquire()
        assert result.is_leader
        assert (await lease.acquire()).operation == "renew"
        fenced = await lease.fenced_set("{coordinator}:fenced:x", "v", result.term)
        assert fenced.accepted and await client.get("{coordinator}:fenced:x") == b"v"
        assert await client.hgetall("{coordinator}:lease:global")
        with pytest.raises(NoPermissionError):
            await client.get("outside")
        with pytest.raises(NoPermissionError):
            await client.set("{other}:lease:global", "x")
        with pytest.raises(NoPermissionError):
            await client.publish("other:events", "x")
        for command in (("KEYS", "*"), ("FLUSHALL",), ("SCAN", "0"), ("CONFIG", "SET", "save", "")):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*command)
        assert await client.xrange("{coordinator}:events:history", count=1)  # what `watch` reads
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("coordinator:events")
            assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"
            with pytest.raises(NoPermissionError):
                await pubsub.subscribe("other:events")
                await pubsub.get_message(timeout=1)  # the refusal comes as the reply
        finally:
            await pubsub.aclose()
        # a script cannot reach past the ACL either: the lease of another namespace
        with pytest.raises(CoordinatorError, match=r"permissions|NOPERM"):
            await Lease(client, holder_id="n1", ttl=5, namespace="other").acquire()
    finally:
        await client.aclose()


async def test_as_the_acl_user_a_grant_records_the_servers_identity(acl_redis: AclRedis) -> None:
    """The failover epoch (acquire.lua's granted_by) needs INFO server and replication inside
    the script: under the shipped ACL it must not silently fall back to no identity."""
    client = aioredis.Redis.from_url(user_url(acl_redis.port))
    try:
        lease = Lease(client, holder_id="epoch", ttl=5, namespace="coordinator",
                      name="epoch-check")
        assert (await lease.acquire()).is_leader
        granted_by = await client.hget(lease.tenure_key, "granted_by")
        assert granted_by and b":" in granted_by, granted_by
        await lease.release()
    finally:
        await client.aclose()


async def test_daemons_elect_and_hand_over_as_the_acl_user(acl_redis: AclRedis) -> None:
    def settings(node_id: str) -> Settings:
        return load_settings(node_id=node_id, namespace="coordinator", lease_name="acl",
                             lease_ttl=2, renew_interval=0.5, heartbeat_interval=0.5,
                             redis_url=user_url(acl_redis.port))

    first, second = Daemon(settings("acl-1")), Daemon(settings("acl-2"))
    await first.start()
    await second.start()
    try:
        assert (first.state.role.value, second.state.role.value) == ("leader", "standby")
        status_client = aioredis.Redis.from_url(user_url(acl_redis.port))
        try:
            status = await cluster_status(status_client, first.settings)
        finally:
            await status_client.aclose()
        assert status["lease"]["holder_id"] == "acl-1"
        assert {"acl-1", "acl-2"} <= {c["node_id"] for c in status["controllers"]}
        await first.stop()  # releases; the standby hears the event and takes over at once
        for _ in range(40):
            if second.state.role.value == "leader":
                break
            await asyncio.sleep(0.05)
        assert second.state.role.value == "leader" and (second.state.term or 0) > (first.state.term or 0)
        for daemon in (first, second):  # not one command of the daemon was refused
            assert daemon.state.last_error is None
            sample = daemon.metrics.registry.get_sample_value
            assert sample("coordinator_lease_renew_failures_total") == 0
            assert sample("coordinator_heartbeat_failures_total") == 0
    finally:
        await first.stop()
        await second.stop()


def test_the_cli_runs_as_the_acl_user(acl_redis: AclRedis, tmp_path: Path) -> None:
    """`coordinator run`, status, watch, events, pause/drain/resume and handoff, all as the
    least-privilege user, against the shipped config."""
    import json as jsonlib
    import signal

    from tests.processes import coordinator as run_cli
    from tests.processes import coordinator_env, daemons

    url = user_url(acl_redis.port)
    env = {"COORDINATOR_LEASE_NAME": "cli"}
    watcher = subprocess.Popen([sys.executable, "-m", "coordinator", "watch", "--json"],
                               env=coordinator_env(url, **env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        with daemons(url, ["cli-1", "cli-2"], tmp_path, **env) as procs:
            deadline = time.monotonic() + 10
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                done = run_cli("status", "--json", redis_url=url, **env)
                assert done.returncode == 0, done.stderr
                status = jsonlib.loads(done.stdout)
                if status["lease"] and len(status["controllers"]) >= 2:
                    break
                time.sleep(0.1)
            leader = status["lease"]["holder_id"]
            other = "cli-2" if leader == "cli-1" else "cli-1"
            for command, mode in (("pause", "paused"), ("drain", "draining"), ("resume", "running")):
                done = run_cli(command, redis_url=url, **env)
                assert done.returncode == 0 and mode in done.stdout, done.stderr
            time.sleep(0.6)
            handed = run_cli("handoff", "--to", other, redis_url=url, **env)
            assert handed.returncode == 0, handed.stderr
            history = run_cli("events", "--json", redis_url=url, **env)
            assert history.returncode == 0, history.stderr
            types = [jsonlib.loads(line)["type"] for line in history.stdout.splitlines()]
            assert "automation_mode_changed" in types and "handoff_requested" in types
            for d in procs.values():
                assert not any(e.get("level") == "error" or "refused" in str(e.get("error", ""))
                               for e in d.logs()), d.logs()
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    seen = [jsonlib.loads(line)["type"] for line in out.splitlines()]
    assert seen[0] == "resync" and "leader_changed" in seen and "automation_mode_changed" in seen


def test_the_installer_user_loads_functions_and_nothing_else(acl_redis: AclRedis) -> None:
    again = install_functions(acl_redis.port)  # the fixture installed them once already
    assert f"function library {functions.library_name()}: already loaded" in again.stdout
    installer = redis_sync.Redis.from_url(admin_url(acl_redis.port))
    try:
        for attempt in (lambda: installer.get("{coordinator}:lease:global"),
                        lambda: installer.eval("return 1", 0),
                        lambda: installer.fcall(functions.function_name("version"), 0),
                        lambda: installer.function_flush()):
            with pytest.raises(NoPermissionError):
                attempt()
    finally:
        installer.close()


def test_install_functions_needs_admin_credentials_from_the_environment(acl_redis: AclRedis) -> None:
    from tests.processes import coordinator_env

    command = [sys.executable, "-m", "coordinator", "redis", "install-functions"]
    env = coordinator_env(user_url(acl_redis.port))
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30,
                             check=False)
    assert missing.returncode == 2 and "COORDINATOR_REDIS_ADMIN_URL" in missing.stderr
    as_runtime = subprocess.run(
        command, env={**env, "COORDINATOR_REDIS_ADMIN_URL": user_url(acl_redis.port)},
        capture_output=True, text=True, timeout=30, check=False)
    assert as_runtime.returncode == 1 and "may not load functions" in as_runtime.stderr
    assert as_runtime.stderr.count("\n") == 1  # one line, no traceback
