"""The control-plane app: controllers, authentication, problem details, OpenAPI, and a lifespan that owns
the asyncpg pool and the NATS connection (both made in the serving event loop, never at import)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import ParameterKwarg
from litestar.static_files import create_static_files_router

from services.kernel.bus import connect
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.log import get_logger
from services.kernel.waits import close_pool

from .agents import AgentController
from .alert_policy import AlertPolicyController
from .audit import AuditController
from .auth import AuthMiddleware
from .calling import CallingSettingsController
from .contacts import ContactController
from .deps import DEPENDENCIES
from .desk import DeskController, DeskSettingsController
from .floor import AgentFloorController, ContactFloorController
from .flows import FlowController, IvrController, NumberRouteController
from .health import HealthController
from .home import home_page
from .keys import KeyController
from .metrics import metrics_middleware
from .numbers import NumberController
from .outbound import DialController, DoNotCallController
from .presence import beating
from .problems import Problem, exception_handlers, validation, validation_problem
from .queues import QueueController
from .ratelimit import SlidingWindow
from .recordings import RecordingAudioController, RecordingController, RecordingSettingsController
from .reports import ExportController, RealtimeController, ReportController, realtime_feed
from .seats import SeatsController, UsageController
from .signalling import signalling_socket
from .signin import AdminSignoutController, AuthController, InviteController
from .sites import SiteController
from .state import ApiState
from .supervision import ScopeController, SupervisionController
from .tenants import MeController, SignupController
from .tokens import TokenController
from .trunks import TrunkController
from .webhooks import WebhookController
from .widget import WidgetKeyController, issue_widget_token_handler, widget_token_preflight

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The static web apps (services/web): the agent desktop at /agent/ (docs/agent-protocol.md).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# The click-to-call widget at /widget/: its demo page and widget.js from sdk/js (services/web/widget/widget.js
# links to it, so that an installed wheel, which has no sdk/js, carries it as services.web package data). The
# demo's folder comes first: Litestar looks for a folder's index.html in the first directory only.
SDK_JS_DIR = Path(__file__).resolve().parents[2] / "sdk" / "js"


FAVICON = (WEB_DIR / "agent" / "favicon.svg").read_bytes()


@get("/favicon.ico", include_in_schema=False, cache=3600)
async def favicon() -> Response[bytes]:
    # Browsers take an SVG icon from /favicon.ico when the content type says so.
    return Response(FAVICON, media_type="image/svg+xml")


_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def _check_query(request: Request[Any, Any, Any]) -> None:
    """Query parameters as strictly as the document says: an integer is digits (not "1e2" or "7.0"), a
    date-time is ISO 8601 (not "0.5", which the lenient conversion reads as seconds since 1970)."""
    for name, field in request.route_handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if not isinstance(kwarg, ParameterKwarg) or kwarg.header or kwarg.cookie:
            continue
        key = kwarg.query or name
        kinds = {t.annotation for t in field.inner_types} if field.is_optional else {field.annotation}
        for raw in request.query_params.getall(key, []):
            if int in kinds and not _INTEGER.match(raw):
                raise validation(key, f"must be an integer, not {raw[:40]!r}")
            if datetime in kinds and (_NUMBER.match(raw) or not _iso_datetime(raw)):
                raise validation(
                    key, f"must be an ISO 8601 date-time such as 2026-01-31T09:00:00Z, not {raw[:40]!r}"
                )


def _iso_datetime(raw: str) -> bool:
    try:
        datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


async def _check_request(request: Request[Any, Any, Any]) -> None:
    _check_query(request)
    await _check_body(request)


async def _check_body(request: Request[Any, Any, Any]) -> None:
    # Runs before the body is parsed: a form post or text body gets a clear 415, not a JSON error.
    if request.method not in _BODY_METHODS:
        return
    content_type = request.headers.get("content-type")
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise Problem(415, f"send the body as JSON (Content-Type: application/json), not {media[:100]}")
    body = await request.body()  # bounded by request_max_body_size (413 beyond)
    if not body.strip():
        return  # the handler's own check says that a body is required
    # Decode here, strictly ("7" is not an int, 1.0 is not an int), into the type the handler declares, so
    # that malformed, mistyped or absurdly nested JSON is a 400/422 before any handler sees it (msgspec
    # raises RecursionError on deep nesting, which would otherwise surface as a 500).
    data_field = request.route_handler.parsed_data_field
    target: Any = data_field.annotation if data_field is not None else Any
    if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
        target = Any
    try:
        msgspec.json.decode(body, type=target, strict=True)
    except msgspec.ValidationError as exc:
        raise validation_problem(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None
    except UnicodeDecodeError:
        raise Problem(400, "the request body is not valid UTF-8") from None
    except RecursionError:
        raise Problem(400, "the request body is nested too deeply") from None


def _lifespan(state: ApiState) -> Any:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        log = get_logger()
        state.pool = await create_pool(state.settings.database_url, min_size=1, max_size=10)
        try:
            state.bus = await connect(state.settings.nats_url, name="api")
            try:
                await state.bus.ensure_streams(state.settings.jetstream_replicas)
                state.started_at = time.time()
                log.info("api_started")
                async with beating(state.presence, state.bus, state.settings.presence_beat_s):
                    yield
            finally:
                await state.bus.close()
                state.bus = None
        finally:
            await close_pool(state.pool)
            state.pool = None
            log.info("api_stopped")

    return lifespan


def create_app(settings: Settings, *, key_rate_per_minute: int | None = None) -> Litestar:
    """`key_rate_per_minute`: overrides SB_KEY_RATE_PER_MINUTE (tests)."""
    state = ApiState(
        settings=settings,
        signup_limiter=SlidingWindow(settings.signup_rate_per_minute),
        key_limiter=SlidingWindow(key_rate_per_minute or settings.key_rate_per_minute),
        widget_limiter=SlidingWindow(settings.widget_token_rate_per_minute),
    )
    openapi = OpenAPIConfig(
        title="Switchboard control plane",
        version="1.0.0",
        description="Tenants, keys, seats and usage, sites, agents, queues, numbers, flows. See docs/api.md.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="sbk_... API key")
            }
        ),
        security=[{"apiKey": []}],
    )
    return Litestar(
        route_handlers=[
            SignupController,
            MeController,
            KeyController,
            SeatsController,
            UsageController,
            SiteController,
            AgentController,
            TokenController,
            InviteController,
            AuthController,
            AdminSignoutController,
            DeskController,
            DeskSettingsController,
            favicon,
            signalling_socket,
            QueueController,
            NumberController,
            NumberRouteController,
            TrunkController,
            FlowController,
            IvrController,
            AuditController,
            ContactController,
            SupervisionController,
            ScopeController,
            AlertPolicyController,
            ContactFloorController,
            AgentFloorController,
            RecordingController,
            RecordingAudioController,
            RecordingSettingsController,
            CallingSettingsController,
            DialController,
            DoNotCallController,
            RealtimeController,
            ReportController,
            realtime_feed,
            ExportController,
            WebhookController,
            WidgetKeyController,
            widget_token_preflight,  # before the POST: see its docstring
            issue_widget_token_handler,
            HealthController,
            home_page(WEB_DIR),
            create_static_files_router(
                path="/agent", directories=[WEB_DIR / "agent"], html_mode=True, name="agent_desktop"
            ),
            create_static_files_router(
                path="/supervisor",
                directories=[WEB_DIR / "supervisor"],
                html_mode=True,
                name="supervisor_console",
            ),
            create_static_files_router(
                path="/widget", directories=[WEB_DIR / "widget", SDK_JS_DIR], html_mode=True, name="widget"
            ),
        ],
        middleware=[
            metrics_middleware,
            # The websocket and the desk authenticate with agent tokens themselves (browsers cannot send
            # API keys); /v1/auth answers to passwords, invitations and the refresh cookie.
            DefineMiddleware(
                AuthMiddleware,
                exclude=[
                    "^/$",
                    "^/schema",
                    "^/v1/ws",
                    "^/v1/realtime/feed$",
                    "^/agent",
                    "^/supervisor",
                    "^/widget",
                    "^/v1/auth/",
                    "^/v1/desk(/|$)",
                    "^/favicon",
                    "^/v1/recording-audio/",
                ],
            ),
        ],
        dependencies=DEPENDENCIES,
        before_request=_check_request,
        exception_handlers=exception_handlers(),
        openapi_config=openapi,
        lifespan=[_lifespan(state)],
        state=State({"api": state}),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )
