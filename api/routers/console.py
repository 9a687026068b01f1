"""What the web console (api/console/) needs beyond the resource routers: who the caller is, the
console's settings, and in dev a list of demo users to sign in as."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Authenticated, Session, SettingsDep
from api.schemas.common import problems
from core.platform.auth_tokens import mint_dev_token
from core.platform.errors import NotFound
from core.platform.roles import Role
from core.agents.service import first_agent_with_prefix
from core.merchants.service import merchants_first_with_prefix

router = APIRouter(tags=["console"])

DEMO_MERCHANT_PREFIX = "mer_demo_"
DEMO_AGENT_PREFIX = "agt_demo_"  # devstack/demo_agents.py
DEMO_TOKEN_TTL_SECONDS = 12 * 3600
MAX_DEMO_MERCHANTS = 6

# Platform users of the picker: (label, role, sub). Two approvers, so a medium-risk action can
# be approved by two different people.
_PLATFORM_USERS = [
    ("Olivia — ops admin", Role.OPS_ADMIN, "demo-olivia"),
    ("Rahul — risk ops", Role.RISK_OPS, "demo-rahul"),
    ("Tess — treasury ops", Role.TREASURY_OPS, "demo-tess"),
    ("Fatou — finance ops", Role.FINANCE_OPS, "demo-fatou"),
    ("Ana — approver", Role.APPROVER, "demo-ana"),
    ("Ben — approver", Role.APPROVER, "demo-ben"),
    ("Aude — auditor", Role.AUDITOR, "demo-aude"),
]


class Me(BaseModel):
    sub: str
    roles: list[str]
    merchant_id: str | None
    is_merchant_user: bool
    agent_id: str | None = Field(default=None, description="for the agent role: the agent the caller is")
    permissions: list[str] = Field(description="what the roles grant; the console shows only what these allow")
    expires_at: int | None = Field(description="the token's `exp` (unix seconds)")
    view_as_by: str | None = Field(default=None, description="in an ops \"view as\" session: the ops user "
                                                             "(the session is read-only)")
    view_as_session: str | None = Field(default=None, description="in an ops \"view as\" session: its id (POST "
                                                                  "/api/v1/ops/view-as/{id}/end ends it)")


class ConsoleConfig(BaseModel):
    env: str
    temporal_ui_url: str
    timezone: str = Field(description="the reporting time zone of trends and reconciliation days")


class DemoUser(BaseModel):
    label: str
    role: str
    merchant_id: str | None
    token: str


@router.get("/me", response_model=Me, responses=problems(401))
async def who_am_i(principal: Authenticated):
    """The caller as the API sees them: roles, merchant (for merchant users) and permissions."""
    return Me(sub=principal.sub, roles=sorted(r.value for r in principal.roles), merchant_id=principal.merchant_id,
              is_merchant_user=principal.is_merchant_user, permissions=sorted(p.value for p in principal.permissions),
              agent_id=principal.agent_id, expires_at=principal.claims.get("exp"), view_as_by=principal.view_as_by,
              view_as_session=principal.claims.get("view_as_session") if principal.view_as_by else None)


@router.get("/console/config", response_model=ConsoleConfig)
async def console_config(settings: SettingsDep):
    """Public settings the console reads before sign-in."""
    return ConsoleConfig(env=settings.env, temporal_ui_url=settings.temporal_ui_url,
                         timezone=settings.dashboard_timezone)


@router.get("/dev/demo-users", response_model=list[DemoUser], responses=problems(404))
async def demo_users(settings: SettingsDep, session: Session):
    """Dev only (404 when PAYOPS_ENV=prod): one signed-in user per platform role, a merchant
    admin per merchant (demo merchants first) and the first demo agent, each with a dev token
    valid 12 hours."""
    if settings.env != "dev":
        raise NotFound("not found")
    rows = await merchants_first_with_prefix(session, DEMO_MERCHANT_PREFIX, MAX_DEMO_MERCHANTS)

    def user(label: str, role: Role, sub: str, merchant_id: str | None = None, agent_id: str | None = None) -> DemoUser:
        token = mint_dev_token(settings, role=role.value, sub=sub, merchant_id=merchant_id, agent_id=agent_id,
                               ttl_seconds=DEMO_TOKEN_TTL_SECONDS)
        return DemoUser(label=label, role=role.value, merchant_id=merchant_id, token=token)

    users = [user(label, role, sub) for label, role, sub in _PLATFORM_USERS]
    for merchant_id, name in rows:
        users.append(user(f"{name} — merchant admin", Role.MERCHANT_ADMIN, f"demo-admin-{merchant_id}", merchant_id))
    if rows:
        merchant_id, name = rows[0]
        users.append(user(f"{name} — merchant viewer", Role.MERCHANT_VIEWER, f"demo-viewer-{merchant_id}",
                          merchant_id))
    agent = await first_agent_with_prefix(session, DEMO_AGENT_PREFIX)
    if agent is not None:
        users.append(user(f"{agent['name']} — agent", Role.AGENT, f"demo-agent-{agent['id']}", agent_id=agent["id"]))
    return users
