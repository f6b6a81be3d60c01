"""SIP trunks: how a tenant's carriers reach the SIP edge (IP allowlist and/or digest credentials) and where
`originate` sends calls (outbound host, port, transport).

The media service reads the same `sip_trunks` rows (services/media/ua/store.py, trunk_auth.py). Digest needs
H(username:realm:password), so the password is hashed here, once, into HA1 for SHA-256 and MD5 (RFC 8760)
and is never stored or returned. Note the edge's rule: a tenant with no trunk accepts calls from anywhere;
once it has one, an inbound call must come from an allowed address or answer the digest challenge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id

from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, Problem, conflict, not_found, validation
from .queries import trunks as sql
from .validation import check_name

__all__ = ["DEFAULT_REALM", "Trunk", "TrunkController", "digest_ha1"]

# The realm the edge challenges with unless a trunk names its own (the media service's SB_SIP_REALM default).
DEFAULT_REALM = "switchboard"
ALLOWED_IPS_MAX = 50
DEFAULT_SIP_PORT = 5060

# Digest user names and realms travel inside quoted strings and HA1 joins them with ':'; keep them plain.
_USERNAME = re.compile(r"^[A-Za-z0-9._~+@!$%&*=-]{1,64}$")
_REALM = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
_PASSWORD = re.compile(r"^[\x20-\x7e]{8,128}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

Transport = Literal["udp", "tcp"]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535, description="1-65535; default 5060")]
IpList = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=64)]],
    msgspec.Meta(max_length=ALLOWED_IPS_MAX, description="IPv4/IPv6 addresses or CIDR networks"),
]
Text100 = Annotated[str, msgspec.Meta(max_length=100)]
Secret = Annotated[str, msgspec.Meta(max_length=128, description="8-128 printable ASCII; never returned")]
Host = Annotated[str, msgspec.Meta(max_length=253, description="host name or IP address")]


class Trunk(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    allowed_ips: list[str]
    username: str | None
    realm: str | None
    has_credentials: bool
    outbound_host: str | None
    outbound_port: int | None
    outbound_transport: str
    created_at: datetime
    updated_at: datetime


class TrunkPage(msgspec.Struct):
    items: list[Trunk]
    next_cursor: str | None


class TrunkCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Text100
    allowed_ips: IpList | None = None
    username: Text100 | None = None
    password: Secret | None = None
    realm: Text100 | None = None
    outbound_host: Host | None = None
    outbound_port: Port | None = None
    outbound_transport: Transport = "udp"


class TrunkPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Text100 | msgspec.UnsetType = msgspec.UNSET
    allowed_ips: IpList | msgspec.UnsetType = msgspec.UNSET
    # username null removes the credentials; a new username or realm needs the password again (HA1).
    username: Text100 | msgspec.UnsetType | None = msgspec.UNSET
    password: Secret | msgspec.UnsetType = msgspec.UNSET
    realm: Text100 | msgspec.UnsetType = msgspec.UNSET
    # outbound_host null: this trunk takes no outbound calls.
    outbound_host: Host | msgspec.UnsetType | None = msgspec.UNSET
    outbound_port: Port | msgspec.UnsetType = msgspec.UNSET
    outbound_transport: Transport | msgspec.UnsetType = msgspec.UNSET


def digest_ha1(username: str, realm: str, password: str) -> tuple[str, str]:
    """HA1 = H(username:realm:password) for SHA-256 and MD5, as the edge verifies and answers digest."""
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.sha256(text).hexdigest(), hashlib.md5(text, usedforsecurity=False).hexdigest()


def _ip_text(value: Any) -> str:
    # asyncpg decodes inet as an address (full prefix) or an interface (network); show networks as CIDR.
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value.network)
    return str(value)


def trunk_from_row(row: asyncpg.Record) -> Trunk:
    return Trunk(
        id=row["id"],
        name=row["name"],
        allowed_ips=[_ip_text(v) for v in row["allowed_ips"]],
        username=row["username"],
        realm=row["realm"],
        has_credentials=row["has_credentials"],
        outbound_host=row["outbound_host"],
        outbound_port=row["outbound_port"],
        outbound_transport=row["outbound_transport"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# fe80::1%eth0: a zone names an interface of the machine the address was typed on, meaningless to the
# platform (and PostgreSQL's inet would drop it silently): refused rather than stored as something else.
_ZONE = "must not carry an IPv6 zone (%interface): give a global address or a host name"


def check_allowed_ips(values: list[str]) -> list[Network]:
    out: list[Network] = []
    for i, raw in enumerate(values):
        text = raw.strip()
        if "%" in text:
            raise validation(f"allowed_ips[{i}]", _ZONE)
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise validation(
                    f"allowed_ips[{i}]",
                    "must be an IPv4 or IPv6 address or CIDR network, e.g. 203.0.113.7 or 203.0.113.0/24",
                ) from None
            raise validation(f"allowed_ips[{i}]", f"has host bits set; did you mean {loose}?") from None
        if network not in out:
            out.append(network)
    return out


def check_host(field: str, value: str) -> str:
    host = value.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "%" in host:
        raise validation(field, _ZONE)
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise validation(field, "must be a host name (e.g. sip.carrier.example) or an IP address")
    return name


def check_username(field: str, value: str) -> str:
    value = value.strip()
    if not _USERNAME.match(value):
        raise validation(field, "must be 1-64 characters of letters, digits and . _ ~ + @ ! $ % & * = -")
    return value


def check_realm(field: str, value: str) -> str:
    value = value.strip()
    if not _REALM.match(value):
        raise validation(field, "must be 1-100 characters of letters, digits and . _ @ -")
    return value


def check_password(field: str, value: str) -> str:
    if not _PASSWORD.match(value):
        raise validation(field, "must be 8-128 printable ASCII characters")
    return value


class _State(msgspec.Struct, kw_only=True):
    """A trunk's stored fields, as they will be written (create, or a row with a patch applied)."""

    name: str
    allowed_ips: list[Network]
    username: str | None
    realm: str | None
    ha1_sha256: str | None
    ha1_md5: str | None
    outbound_host: str | None
    outbound_port: int | None
    outbound_transport: str

    def check_useful(self) -> None:
        if not self.allowed_ips and self.username is None and self.outbound_host is None:
            raise Problem(
                422,
                "a trunk needs at least one of allowed_ips, username and password (digest), or outbound_host",
                slug="validation",
            )

    def detail(self) -> dict[str, Any]:
        # For the audit log: everything but the secrets.
        return {
            "name": self.name,
            "allowed_ips": [str(n) for n in self.allowed_ips],
            "username": self.username,
            "realm": self.realm,
            "has_credentials": self.ha1_sha256 is not None,
            "outbound_host": self.outbound_host,
            "outbound_port": self.outbound_port,
            "outbound_transport": self.outbound_transport,
        }


def _credentials(
    username: str | None, password: str | None, realm: str | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """(username, realm, ha1_sha256, ha1_md5) from a create body's optional pair."""
    if username is None and password is None:
        if realm is not None:
            raise validation("realm", "only applies with username and password")
        return None, None, None, None
    if username is None or password is None:
        missing = "username" if username is None else "password"
        raise validation(missing, "username and password go together: give both or neither")
    user = check_username("username", username)
    used_realm = check_realm("realm", realm) if realm is not None else DEFAULT_REALM
    sha, md5 = digest_ha1(user, used_realm, check_password("password", password))
    return user, used_realm, sha, md5


def _name_taken(name: str) -> Exception:
    return conflict(f"a trunk named {name!r} already exists")


def _values(state: _State) -> tuple[Any, ...]:
    """The written fields in queries.trunks.FIELDS order."""
    return (
        state.name,
        state.allowed_ips,
        state.username,
        state.realm,
        state.ha1_sha256,
        state.ha1_md5,
        state.outbound_host,
        state.outbound_port,
        state.outbound_transport,
    )


def _published(
    principal: Principal, op: Literal["created", "updated", "deleted"], trunk_id: uuid.UUID
) -> list[Any]:
    return [ConfigChanged(tenant_id=principal.tenant_id, kind="trunk", op=op, object_id=trunk_id)]


class TrunkController(Controller):
    path = "/v1/trunks"
    tags = ["trunks"]

    @post("/", responses=WRITE_ERRORS, status_code=201, guards=[admin_only], summary="Create a SIP trunk")
    async def create_trunk(self, mutation: MutationDep, data: JSONBody[TrunkCreate]) -> Response[Trunk]:
        username, realm, sha, md5 = _credentials(data.username, data.password, data.realm)
        host = check_host("outbound_host", data.outbound_host) if data.outbound_host is not None else None
        if host is None and data.outbound_port is not None:
            raise validation("outbound_port", "only applies with outbound_host")
        state = _State(
            name=check_name("name", data.name),
            allowed_ips=check_allowed_ips(data.allowed_ips or []),
            username=username,
            realm=realm,
            ha1_sha256=sha,
            ha1_md5=md5,
            outbound_host=host,
            outbound_port=(data.outbound_port or DEFAULT_SIP_PORT) if host is not None else None,
            outbound_transport=data.outbound_transport,
        )
        state.check_useful()

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Trunk]:
            try:
                async with conn.transaction():
                    row = await sql.insert(conn, new_id(), principal.tenant_id, _values(state))
            except asyncpg.UniqueViolationError:
                raise _name_taken(state.name) from None
            trunk = trunk_from_row(row)
            await audit(conn, principal, "trunk.created", "trunk", trunk.id, state.detail())
            return Outcome(201, trunk, _published(principal, "created", trunk.id))

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List SIP trunks")
    async def list_trunks(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> TrunkPage:
        rows, next_cursor = await read_page(tenant_conn, "sip_trunks", sql.COLUMNS, limit, cursor)
        return TrunkPage(items=[trunk_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{trunk_id:str}", responses=READ_ERRORS, summary="Read a SIP trunk")
    async def get_trunk(self, tenant_conn: TenantConnDep, trunk_id: IdParam) -> Trunk:
        row = await sql.get(tenant_conn, path_id(trunk_id, "trunk"))
        if row is None:
            raise not_found("trunk")
        return trunk_from_row(row)

    @patch(
        "/{trunk_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Change a SIP trunk (allowed_ips are replaced whole; new credentials need the password)",
    )
    async def update_trunk(
        self, mutation: MutationDep, trunk_id: IdParam, data: JSONBody[TrunkPatch]
    ) -> Response[Trunk]:
        tid = path_id(trunk_id, "trunk")
        name = check_name("name", data.name) if data.name is not msgspec.UNSET else None
        ips = check_allowed_ips(data.allowed_ips) if data.allowed_ips is not msgspec.UNSET else None
        password = check_password("password", data.password) if data.password is not msgspec.UNSET else None
        if data.username is None:
            if password is not None or data.realm is not msgspec.UNSET:
                raise validation(
                    "username", "null removes the credentials; send no password or realm with it"
                )
        elif password is None and (data.username is not msgspec.UNSET or data.realm is not msgspec.UNSET):
            raise validation(
                "password", "is needed to change username or realm (the stored digest depends on it)"
            )
        username = check_username("username", data.username) if isinstance(data.username, str) else None
        realm = check_realm("realm", data.realm) if data.realm is not msgspec.UNSET else None
        host: str | None = None
        if isinstance(data.outbound_host, str):
            host = check_host("outbound_host", data.outbound_host)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Trunk]:
            current = await sql.lock(conn, tid)
            if current is None:
                raise not_found("trunk")
            state = _State(
                name=current["name"],
                allowed_ips=[ipaddress.ip_network(_ip_text(v)) for v in current["allowed_ips"]],
                username=current["username"],
                realm=current["realm"],
                ha1_sha256=current["ha1_sha256"],
                ha1_md5=current["ha1_md5"],
                outbound_host=current["outbound_host"],
                outbound_port=current["outbound_port"],
                outbound_transport=current["outbound_transport"],
            )
            if name is not None:
                state.name = name
            if ips is not None:
                state.allowed_ips = ips
            if data.username is None:
                state.username = state.realm = state.ha1_sha256 = state.ha1_md5 = None
            elif password is not None:
                user = username or state.username
                if user is None:
                    raise validation("username", "is needed with password (this trunk has no username yet)")
                used_realm = realm or state.realm or DEFAULT_REALM
                state.username, state.realm = user, used_realm
                state.ha1_sha256, state.ha1_md5 = digest_ha1(user, used_realm, password)
            if data.outbound_host is None:
                if data.outbound_port is not msgspec.UNSET:
                    raise validation("outbound_port", "only applies with outbound_host")
                state.outbound_host = state.outbound_port = None
            elif host is not None:
                state.outbound_host = host
                state.outbound_port = state.outbound_port or DEFAULT_SIP_PORT
            if data.outbound_port is not msgspec.UNSET:
                if state.outbound_host is None:
                    raise validation("outbound_port", "only applies with outbound_host")
                state.outbound_port = data.outbound_port
            if data.outbound_transport is not msgspec.UNSET:
                state.outbound_transport = data.outbound_transport
            state.check_useful()
            try:
                async with conn.transaction():
                    row = await sql.replace(conn, tid, _values(state))
            except asyncpg.UniqueViolationError:
                raise _name_taken(state.name) from None
            detail = state.detail()
            detail["credentials_changed"] = data.username is None or password is not None
            await audit(conn, principal, "trunk.updated", "trunk", tid, detail)
            return Outcome(200, trunk_from_row(row), _published(principal, "updated", tid))

        return await mutation.run(work)

    @delete(
        "/{trunk_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Delete a SIP trunk",
    )
    async def delete_trunk(self, mutation: MutationDep, trunk_id: IdParam) -> Response[None]:
        tid = path_id(trunk_id, "trunk")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            name = await sql.delete(conn, tid)
            if name is None:
                raise not_found("trunk")
            await audit(conn, principal, "trunk.deleted", "trunk", tid, {"name": name})
            return Outcome(204, None, _published(principal, "deleted", tid))

        return await mutation.run(work)
