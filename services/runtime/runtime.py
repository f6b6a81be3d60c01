"""`switchboard up`: the whole platform on one machine, started and stopped in order.

Start: lock the data dir, check the ports, start PostgreSQL and NATS (embedded, or the servers named by
SB_DATABASE_URL / SB_NATS_URL), bootstrap the application role and apply migrations, start every service as
a supervised child, wait for the API's /healthz, optionally make the demo tenant, print a banner.
Stop (Ctrl-C, SIGTERM, SIGHUP): services first (SIGTERM, 10 s, SIGKILL), then NATS, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import fcntl
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from services.kernel import db

from .demo import DEMO_AGENTS, DemoError, DemoTenant, ensure_demo
from .embedded import APP_ROLE, DATABASE, EmbeddedNats, EmbeddedPostgres, Secrets
from .public import (
    PublicAccess,
    PublicRequest,
    PublicUrlError,
    machine_addresses,
    public_env,
    resolve,
    trust_steps,
    turn_binary,
    turn_config,
)
from .supervisor import ChildSpec, Output, Supervisor

__all__ = ["SERVICES", "DataDirLock", "Options", "Runtime", "StartupError", "run"]

SERVICES_DIR = Path(__file__).resolve().parents[1]  # services/: one folder per service

SERVICES = ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")
DEFAULT_HTTP_PORT = 8080
PROGRESS_EVERY_S = 10.0  # how often start-up says what it is still waiting for


class StartupError(Exception):
    """Start-up cannot go on; the message is one line a user can act on."""


@dataclass(frozen=True)
class Options:
    data_dir: Path
    http_port: int = DEFAULT_HTTP_PORT
    sip_port: int = 5060
    demo: bool = False
    services: tuple[str, ...] = SERVICES
    bind_host: str = "127.0.0.1"
    ready_timeout_s: float = 90.0
    stop_timeout_s: float = 10.0
    # More than 1: a SIP front on the SIP port and this many media workers behind it (docs/media.md).
    media_workers: int = 1
    # More than 1: this many API processes accepting on one listening socket the runtime binds (api_specs).
    api_workers: int = 1
    # `--workers contacts=2,ivr=2,routing=2`: processes sharing a service's tenants by partition (worker_specs).
    workers: tuple[tuple[str, int], ...] = ()

    def workers_of(self, name: str) -> int:
        return dict(self.workers).get(name, 1)

    # --public-url and its companions: HTTPS, ICE addresses and TURN for agents on other machines.
    public: PublicRequest | None = None


class DataDirLock:
    """`<data dir>/runtime.lock`: an flock held for the runtime's life, with its PID inside for humans.

    The kernel drops an flock when its holder dies, however it dies, so a lock left by a runtime that was
    killed -9 is simply taken over.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "runtime.lock"
        self._fd: int | None = None
        self.stale_pid: int | None = None  # PID found in a lock taken over

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"PID {holder}" if holder else "another process"
                raise StartupError(
                    f"another switchboard up ({who}) is already running on {self.path.parent}; "
                    "stop it first, or use another --data-dir"
                ) from None
            raise
        self.stale_pid = _read_pid(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    except (OSError, ValueError):
        return None


def check_port_free(host: str, port: int, kind: int, what: str, flag: str) -> None:
    """Refuse early and clearly if something already listens where a service must."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            # Servers set SO_REUSEADDR, so TIME_WAIT leftovers of an earlier run do not count as busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
            reason = (
                "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            )
            raise StartupError(
                f"{what} port {host}:{port}/{proto} {reason}; choose another with {flag}"
            ) from None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" if parts.password else f"***@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def _wait_for_db(url: str, timeout: float = 30.0, what: str = "PostgreSQL") -> None:
    # A postmaster accepts TCP before it accepts sessions (startup, crash recovery after a kill).
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            if time.monotonic() > deadline:
                raise StartupError(f"cannot reach PostgreSQL at {_redact(url)} ({what}): {exc}") from None
            await asyncio.sleep(0.1)
            continue
        except asyncpg.PostgresError as exc:  # wrong password, no such database: retrying will not help
            raise StartupError(
                f"PostgreSQL at {_redact(url)} ({what}) refused the connection: {exc}"
            ) from None
        await conn.close()
        return


class Runtime:
    def __init__(self, opts: Options, out: Output, process_started: float) -> None:
        self.opts = opts
        self.out = out
        self.data_dir = opts.data_dir
        self.process_started = process_started
        self.lock = DataDirLock(self.data_dir)
        self.pg: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.supervisor: Supervisor | None = None
        self.api_listener: socket.socket | None = None  # with --api-workers > 1 (api_specs)
        self.stop_requested = asyncio.Event()
        self._signals = 0
        self.database_url = ""
        self.nats_url = ""
        self.cold = False
        self.public: PublicAccess | None = None

    def say(self, text: str) -> None:
        self.out.line("runtime", text)

    # -- signals -------------------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            self.say(f"{sig.name}: stopping (press Ctrl-C again to kill the services at once)")
            self.stop_requested.set()
        elif self.supervisor is not None:
            self.say(f"{sig.name} again: killing the services")
            self.supervisor.kill()

    def _interrupted(self) -> bool:
        return self.stop_requested.is_set()

    # -- main ----------------------------------------------------------------------------------------

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        code = 0
        try:
            # A signal during start-up (say, while waiting for /healthz) stops at once, not after it.
            starting = asyncio.create_task(self._start())
            stopping = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
            try:
                await starting
            except asyncio.CancelledError:
                pass
            except StartupError as exc:
                print(f"switchboard up: error: {exc}", file=sys.stderr, flush=True)
                code = 1
            else:
                await stopping
            stopping.cancel()
        finally:
            await self._shutdown()
        return code

    async def _start(self) -> None:
        opts = self.opts
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as exc:
            raise StartupError(f"cannot use the data dir {self.data_dir}: {exc.strerror or exc}") from None
        if self.lock.stale_pid and not psutil.pid_exists(self.lock.stale_pid):
            self.say(f"took over the lock left by an earlier runtime (PID {self.lock.stale_pid}, gone)")
        # Looked up as files: find_spec("services.api.__main__") imports services.api (the whole API app,
        # seconds of imports) in this process, before PostgreSQL has even started.
        missing = [s for s in opts.services if not (SERVICES_DIR / s / "__main__.py").is_file()]
        if missing:
            raise StartupError(
                f"no entry point for {', '.join(missing)} (services/<name>/__main__.py); "
                "leave them out with --services"
            )
        if opts.public is not None:
            self._resolve_public(opts.public)
        if "api" in opts.services:
            check_port_free(opts.bind_host, opts.http_port, socket.SOCK_STREAM, "HTTP", "--http-port")
        if "media" in opts.services:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                check_port_free(opts.bind_host, opts.sip_port, kind, "SIP", "--sip-port")
        try:
            secrets_ = Secrets.load_or_create(self.data_dir)
        except (OSError, ValueError, TypeError) as exc:
            raise StartupError(f"cannot read {self.data_dir / 'secrets.json'}: {exc}") from None
        await self._start_database(secrets_)
        if self._interrupted():
            return
        await self._start_nats(secrets_)
        if self._interrupted():
            return
        self._start_services(secrets_)
        await self._become_ready()

    def _resolve_public(self, request: PublicRequest) -> None:
        try:
            self.public = resolve(
                request, self.data_dir, datetime.datetime.now(datetime.UTC), machine_addresses()
            )
        except PublicUrlError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"--public-url: {exc}") from None
        if self.public.turn_port is not None:
            for host in self.public.ice_hosts:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    check_port_free(host, self.public.turn_port, kind, "TURN", "--turn-port")

    async def _start_database(self, secrets_: Secrets) -> None:
        external = os.environ.get("SB_DATABASE_URL", "")
        admin = os.environ.get("SB_DATABASE_ADMIN_URL", "")
        try:
            if external:
                self.database_url = external
                self.say(f"PostgreSQL: using {_redact(external)} (SB_DATABASE_URL)")
                if admin:
                    await _wait_for_db(admin, timeout=5, what="SB_DATABASE_ADMIN_URL")
                    parts = urlsplit(external)
                    role = unquote(parts.username or "")
                    database = parts.path.lstrip("/") or role
                    await db.bootstrap(
                        admin, database=database, app_role=role, app_password=unquote(parts.password or "")
                    )
                    applied = await db.migrate(_with_database(admin, database), app_role=role)
                    self._report_migrations(applied)
                else:
                    self.say(
                        "SB_DATABASE_ADMIN_URL not set: assuming roles and migrations are already in place"
                    )
                    await self._check_schema(external)
                return
            self.pg = EmbeddedPostgres(self.data_dir, secrets_)
            self.cold = not (self.pg.pgdata / "PG_VERSION").exists()
            started = time.monotonic()
            left = self.pg.running_pid()
            if left is not None:
                self.say(
                    f"PostgreSQL left running for this data dir (PID {left}): restarting it as our child"
                )
                self.pg.port = None  # a fresh free port, as on every start
            self.pg.start(supervised=True)
            await _wait_for_db(self.pg.admin_url)
            self.say(
                f"PostgreSQL: embedded on 127.0.0.1:{self.pg.port} "
                f"({'new' if self.cold else 'existing'} data in {self.pg.pgdata}, {time.monotonic() - started:.2f} s)"
            )
            await db.bootstrap(
                self.pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            self._report_migrations(await db.migrate(self.pg.owner_url, app_role=APP_ROLE))
            self.database_url = self.pg.app_url
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise StartupError(f"PostgreSQL failed: {detail[-1] if detail else exc}") from None
        except (OSError, asyncpg.PostgresError, RuntimeError, ValueError) as exc:
            raise StartupError(f"PostgreSQL: {exc}") from None

    def _report_migrations(self, applied: list[int]) -> None:
        if applied:
            self.say(f"migrations applied: {', '.join(f'{v:04d}' for v in applied)}")
        else:
            self.say("migrations: up to date")

    async def _check_schema(self, url: str) -> None:
        await _wait_for_db(url, timeout=5, what="SB_DATABASE_URL")
        conn = await asyncpg.connect(url, timeout=5)
        try:
            if await conn.fetchval("SELECT to_regclass('public.tenants')") is None:
                raise StartupError(
                    "the database has no Switchboard schema; set SB_DATABASE_ADMIN_URL to apply migrations"
                )
        finally:
            await conn.close()

    async def _start_nats(self, secrets_: Secrets) -> None:
        external = os.environ.get("SB_NATS_URL", "")
        if external:
            import nats

            async def quiet(_exc: Exception) -> None:
                return None

            try:
                # nats-py keeps retrying a refused first connection whatever its options say: bound it.
                nc = await asyncio.wait_for(
                    nats.connect(external, connect_timeout=3, allow_reconnect=False, error_cb=quiet), 5
                )
            except TimeoutError:
                raise StartupError(
                    f"NATS at {_redact(external)} (SB_NATS_URL) did not answer within 5 s"
                ) from None
            except Exception as exc:
                raise StartupError(
                    f"NATS at {_redact(external)} (SB_NATS_URL) is not reachable: {exc}"
                ) from None
            await nc.close()
            self.nats_url = external
            self.say(f"NATS: using {_redact(external)} (SB_NATS_URL)")
            return
        # Contacts and recordings' metadata are on one disk here: fsync each write before it is acknowledged
        # (measured cheap at one machine's event rates: docs/operators.md, "Durability").
        self.nats = EmbeddedNats(self.data_dir, secrets_, sync_interval="always")
        try:
            self.nats.start()
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"NATS: {exc}") from None
        self.nats_url = self.nats.url
        self.say(f"NATS: embedded on 127.0.0.1:{self.nats.port} (JetStream in {self.nats.dir / 'js'})")

    def _child_env(self, name: str, secrets_: Secrets) -> dict[str, str]:
        env = dict(os.environ)
        # numpy's OpenBLAS threads spin on small vectors (DTMF detection): one thread per process is faster.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # Services get the application role only; owner rights stay with the runtime.
        env.pop("SB_DATABASE_ADMIN_URL", None)
        env.update(
            SB_DATABASE_URL=self.database_url,
            # The embedded server has a user per service, refused other services' subjects.
            SB_NATS_URL=self.nats.service_url(name) if self.nats is not None else self.nats_url,
            SB_DATA_DIR=str(self.data_dir),
            SB_HTTP_PORT=str(self.opts.http_port),
            SB_SIP_PORT=str(self.opts.sip_port),
            SB_TOKEN_SECRET=os.environ.get("SB_TOKEN_SECRET") or secrets_.token_secret,
            SB_SIP_DIGEST_SECRET=os.environ.get("SB_SIP_DIGEST_SECRET") or secrets_.sip_digest_secret,
            SB_SERVICE_NAME=name,
            SB_BIND_HOST=self.opts.bind_host,
            # /healthz waits for exactly the services this runtime runs.
            SB_EXPECTED_SERVICES=",".join(s for s in self.opts.services if s != "api"),
            PYTHONUNBUFFERED="1",  # each log line reaches us (and the terminal) as it is written
            # A person at a terminal reads short lines; a pipe or a file gets JSON (SB_LOG_FORMAT overrides).
            SB_LOG_FORMAT=os.environ.get("SB_LOG_FORMAT") or ("console" if self.out.isatty() else "json"),
        )
        if self.public is not None:
            env.update(public_env(self.public))
        return env

    def _start_services(self, secrets_: Secrets) -> None:
        specs = [
            ChildSpec(name, [sys.executable, "-m", f"services.{name}"], self._child_env(name, secrets_))
            for name in self.opts.services
            if not (name == "media" and self.opts.media_workers > 1)
            and not (name == "api" and self.opts.api_workers > 1)
            and self.opts.workers_of(name) == 1
        ]
        for name, count in self.opts.workers:
            if name in self.opts.services and count > 1:
                specs += worker_specs(name, self._child_env(name, secrets_), count)
        if "media" in self.opts.services and self.opts.media_workers > 1:
            specs += media_specs(self._child_env("media", secrets_), self.opts.media_workers)
        if "api" in self.opts.services and self.opts.api_workers > 1:
            self.api_listener = api_listener(self.opts.bind_host, self.opts.http_port)
            specs += api_specs(self._child_env("api", secrets_), self.api_listener, self.opts.api_workers)
        if self.public is not None and self.public.turn_port is not None:
            specs.append(self._turn_spec(self.public))
        self.supervisor = Supervisor(specs, self.out)
        self.supervisor.start()
        self.say(f"services: starting {', '.join(self.opts.services)}")

    def _turn_spec(self, access: PublicAccess) -> ChildSpec:
        """coturn as a supervised child, its configuration (with the shared secret) rewritten each start."""
        conf = self.data_dir / "turn" / "turnserver.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(turn_config(access, self.data_dir))
        binary = turn_binary()
        assert binary is not None  # resolve() refused --turn without it
        return ChildSpec("turn", [binary, "-c", str(conf)], {"PATH": os.environ.get("PATH", "")})

    @property
    def tls(self) -> bool:
        return self.public is not None and self.public.cert is not None

    @property
    def api_url(self) -> str:
        host = self.opts.bind_host
        # Bound to every interface (explicit configuration): the API is still reached on loopback.
        if host == "" or _is_unspecified(host):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.opts.http_port}"

    async def _wait_healthy(self) -> tuple[bool, str]:
        started = time.monotonic()
        deadline = started + self.opts.ready_timeout_s
        next_progress = started + PROGRESS_EVERY_S
        last = "no answer yet"
        waiting: list[str] = ["api"]
        # Our own child on this machine: its certificate names the public host, not the bind address.
        async with httpx.AsyncClient(timeout=2, trust_env=False, verify=not self.tls) as client:
            while time.monotonic() < deadline and not self._interrupted():
                try:
                    resp = await client.get(f"{self.api_url}/healthz")
                    if resp.status_code == 200:
                        return True, ""
                    last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    waiting = not_ready(resp)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= next_progress:
                    # A person waiting at a slow machine sees what is still starting, not silence.
                    self.say(
                        f"still starting after {time.monotonic() - started:.0f} s: {', '.join(waiting) or 'checks'}"
                    )
                    next_progress += PROGRESS_EVERY_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), 0.1)
        return False, last

    async def _become_ready(self) -> None:
        healthy, problem = (False, "")
        if "api" in self.opts.services:
            healthy, problem = await self._wait_healthy()
            if self._interrupted():
                return
            if not healthy:
                self.say(f"not healthy after {self.opts.ready_timeout_s:g} s ({problem}); still trying")
        elapsed = time.time() - self.process_started
        demo: DemoTenant | None = None
        demo_error = ""
        if self.opts.demo and healthy:
            try:
                demo = await ensure_demo(self.api_url, self.data_dir, verify=not self.tls)
            except (DemoError, httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                demo_error = str(exc) or type(exc).__name__
        elif self.opts.demo:
            demo_error = (
                "the API is not healthy" if "api" in self.opts.services else "the api service is not running"
            )
        self._banner(elapsed, healthy, demo, demo_error)

    def _banner(self, elapsed: float, healthy: bool, demo: DemoTenant | None, demo_error: str) -> None:
        kind = "cold start, new data dir" if self.cold else "warm start, existing data dir"
        if self.pg is None:
            kind = "external PostgreSQL"
        lines = ["", f"Switchboard is up in {elapsed:.1f} s ({kind})."]
        if "api" in self.opts.services:
            state = "healthy" if healthy else "NOT healthy yet"
            lines += [
                f"  Web        {self.api_url}/  (agent desktop, API reference, health)",
                f"  API        {self.api_url}  ({state})",
                f"  OpenAPI    {self.api_url}/schema",
                f"  Health     {self.api_url}/healthz",
            ]
        else:
            lines.append("  API        not started (--services leaves it out)")
        lines.append(f"  Data       {self.data_dir}")
        if "media" in self.opts.services:
            lines.append(f"  SIP        {self.opts.bind_host}:{self.opts.sip_port} (UDP and TCP)")
            if self.opts.media_workers > 1:
                lines.append(f"  Media      {self.opts.media_workers} workers behind the SIP front")
        for name, count in self.opts.workers:
            if name in self.opts.services and count > 1:
                lines.append(f"  {name.capitalize():<10} {count} workers sharing the tenants by partition")
        if self.public is not None:
            lines += self._public_lines(self.public)
        api_flag = "" if self.opts.http_port == DEFAULT_HTTP_PORT else f" --api-url {self.api_url}"
        sb, activate = cli_invocation()
        where = f", in {Path.cwd()}" if not sb.startswith(("/", "switchboard")) else ""
        if demo is not None:
            made = f" (created: {', '.join(demo.created)})" if demo.created else " (already there)"
            lines += [
                "",
                f'Demo tenant "Demo Co"{made}:',
                f"  API key    {demo.api_key}   (also in {self.data_dir / 'demo.json'})",
                f"  Agents     {', '.join(demo.agents)}; queue Support; number {demo.number}",
                f"  Flow       {demo.flow} v{demo.flow_version} answers {demo.number}: "
                "press 1 for Support, 9 to hear it again",
                "",
                f"Next, in another terminal{where} (the demo tenant gets its own profile, 'demo'):",
                f"  {sb} login --profile demo --api-key {demo.api_key}{api_flag}",
                f"  {sb} agents list --profile demo",
                f"  {sb} agents invite {DEMO_AGENTS[0]['email']} --profile demo   # a link to the agent desktop",
                f'  {sb} signup --company "Acme Ltd" --email you@acme.example{api_flag}   # your own tenant',
            ]
        else:
            if demo_error:
                lines += ["", f"Demo tenant not ready: {demo_error}"]
            lines += [
                "",
                f"Next, in another terminal{where}:",
                f'  {sb} signup --company "Acme Ltd" --email you@acme.example{api_flag}',
                f"  {sb} seats buy 3",
            ]
        if activate:
            lines.append(f"  (or run `{activate}` once, then type plain `switchboard ...`)")
        lines += ["", "Press Ctrl-C to stop.", ""]
        self.out.block(lines)

    def _public_lines(self, access: PublicAccess) -> list[str]:
        lines = [
            f"  Agents     {access.url}/agent/  (other machines: this address)",
            f"  ICE        media offers {', '.join(access.ice_hosts)}",
        ]
        if access.turn_port is not None:
            lines.append(
                f"  TURN       turn:{access.host}:{access.turn_port} (UDP and TCP, coturn; short-lived "
                "credentials from the shared secret in DATA_DIR/turn/secret)"
            )
        if access.tls == "proxy":
            lines.append(f"  TLS        by your reverse proxy, forwarding {access.url} to {self.api_url}")
        elif access.tls == "self-signed" and access.cert is not None:
            lines += ["", *trust_steps(access.cert, access.url)]
        local = self.opts.bind_host in ("127.0.0.1", "::1", "localhost")
        if local and access.tls != "proxy" and access.host not in ("127.0.0.1", "::1", "localhost"):
            lines += [
                "",
                f"Note: the API listens on {self.opts.bind_host} only, so other machines cannot reach "
                f"{access.url}: add --bind with this machine's address, or --behind-proxy.",
            ]
        return lines

    async def _shutdown(self) -> None:
        started = time.monotonic()
        if self.supervisor is not None:
            await self.supervisor.stop(self.opts.stop_timeout_s)
        if self.api_listener is not None:
            self.api_listener.close()
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()
        self.lock.release()
        if self.supervisor is not None or self.pg is not None or self.nats is not None:
            self.say(f"stopped in {time.monotonic() - started:.1f} s")


def run(opts: Options, out: Output | None = None) -> int:
    """Run until a signal; the exit status (0 after a clean stop, 1 if start-up failed)."""
    try:
        process_started = psutil.Process().create_time()
    except psutil.Error:
        process_started = time.time()
    output = out or Output(child_names(opts))
    return asyncio.run(Runtime(opts, output, process_started).main())


def api_listener(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound once by the runtime and inherited by every API process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=2048)
    listener.set_inheritable(True)
    return listener


def api_specs(env: dict[str, str], listener: socket.socket, workers: int) -> list[ChildSpec]:
    """`--api-workers N` (N > 1): N API processes accepting on one socket (the pre-fork model). Chosen over
    SO_REUSEPORT: the port is bound once, so a second runtime on the same port fails instead of silently
    sharing it, and a dead process leaves no accept queue of its own to drop; the kernel hands each new
    connection to whichever process accepts first. Desk pushes reach an agent through NATS, whichever
    process holds its socket; a client whose process dies reconnects to another (docs/agent-protocol.md)."""
    fd = listener.fileno()
    return [
        ChildSpec(
            f"api-{k}",
            [sys.executable, "-m", "services.api"],
            {**env, "SB_API_LISTEN_FD": str(fd)},
            pass_fds=(fd,),
        )
        for k in range(1, workers + 1)
    ]


def media_specs(env: dict[str, str], workers: int) -> list[ChildSpec]:
    """`--media-workers N` (N > 1): the SIP front on the SIP port and N workers behind it, each with its
    own slice of the RTP port range (docs/media.md, "Sharding")."""
    low = int(env.get("SB_RTP_PORT_MIN") or 20000)
    high = int(env.get("SB_RTP_PORT_MAX") or 30000)
    span = (high - low) // workers // 2 * 2  # even: RTP on even ports, RTCP on the next
    specs = [ChildSpec("media-front", [sys.executable, "-m", "services.media.front"], dict(env))]
    for k in range(1, workers + 1):
        start = low + (k - 1) * span
        worker_env = {
            **env,
            "SB_MEDIA_WORKER_ID": f"media-{k}",
            "SB_RTP_PORT_MIN": str(start),
            "SB_RTP_PORT_MAX": str(start + span - 1),
        }
        specs.append(ChildSpec(f"media-{k}", [sys.executable, "-m", "services.media"], worker_env))
    return specs


PARTITIONED = ("contacts", "ivr", "routing")


def worker_specs(name: str, env: dict[str, str], workers: int) -> list[ChildSpec]:
    """`--workers NAME=N` (N > 1) for contacts, ivr or routing: N processes sharing the tenants by partition.
    Worker k's home is the partitions p with p % N == k - 1; each takes a dead worker's partitions within
    seconds and gives them back when it returns (services/kernel/partitioned.py, docs/operators.md)."""
    specs = []
    for k in range(1, workers + 1):
        worker_env = {**env, "SB_WORKER_COUNT": str(workers), "SB_WORKER_INDEX": str(k - 1)}
        # The runtime's names: a worker restarted by the supervisor takes its home leases back at once.
        worker_env["SB_ROUTING_WORKER_ID" if name == "routing" else "SB_WORKER_ID"] = f"{name}-{k}"
        specs.append(ChildSpec(f"{name}-{k}", [sys.executable, "-m", f"services.{name}"], worker_env))
    return specs


def child_names(opts: Options) -> list[str]:
    """The supervised children's names, as the output prefixes them."""
    names: list[str] = ["turn"] if opts.public is not None and opts.public.turn else []
    for name in opts.services:
        if name == "media" and opts.media_workers > 1:
            names += ["media-front", *(f"media-{k}" for k in range(1, opts.media_workers + 1))]
        elif name == "api" and opts.api_workers > 1:
            names += [f"api-{k}" for k in range(1, opts.api_workers + 1)]
        elif opts.workers_of(name) > 1:
            names += [f"{name}-{k}" for k in range(1, opts.workers_of(name) + 1)]
        else:
            names.append(name)
    return names


def not_ready(resp: httpx.Response) -> list[str]:
    """What a 503 /healthz says is not up yet (services, PostgreSQL, NATS), by name."""
    try:
        body = resp.json()
    except ValueError:
        return ["api"]
    if not isinstance(body, dict):
        return ["api"]
    down = [name for name in ("postgres", "nats") if (body.get(name) or {}).get("status") != "ok"]
    services = body.get("services") or {}
    down += sorted(n for n, v in services.items() if isinstance(v, dict) and v.get("status") != "ok")
    return down


def cli_invocation(cwd: Path | None = None) -> tuple[str, str]:
    """How to run the `switchboard` CLI of this installation as printed, and how to activate its
    virtualenv (empty when `switchboard` on PATH already is this one, or there is no virtualenv)."""
    script = Path(sys.executable).with_name("switchboard")
    on_path = shutil.which("switchboard")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "switchboard", ""
    cwd = cwd or Path.cwd()
    try:
        shown = script.relative_to(cwd)
    except ValueError:
        shown = script
    activate = script.with_name("activate")
    if activate.exists():
        try:
            activate = activate.relative_to(cwd)
        except ValueError:
            pass
        return str(shown), f". {activate}"
    return str(shown), ""


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False
