"""Roles and what each may do: the role matrix (docs/roles.md is generated from it)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    MERCHANT_ADMIN = "merchant_admin"
    MERCHANT_VIEWER = "merchant_viewer"
    FINANCE_OPS = "finance_ops"
    TREASURY_OPS = "treasury_ops"
    RISK_OPS = "risk_ops"
    OPS_ADMIN = "ops_admin"
    APPROVER = "approver"
    AUDITOR = "auditor"
    AGENT = "agent"  # a mobile-money agent (cash-in/cash-out point): its own agent's data only


MERCHANT_ROLES = frozenset({Role.MERCHANT_ADMIN, Role.MERCHANT_VIEWER})
AGENT_ROLES = frozenset({Role.AGENT})
PLATFORM_ROLES = frozenset(Role) - MERCHANT_ROLES - AGENT_ROLES


class Permission(StrEnum):
    PAYOUTS_READ = "payouts:read"
    PAYOUTS_WRITE = "payouts:write"  # create payouts (merchant side)
    PAYOUTS_OPERATE = "payouts:operate"  # cancel / retry (ops side)
    MERCHANTS_MANAGE = "merchants:manage"  # create merchants, fund them
    BALANCES_READ = "balances:read"
    LEDGER_READ = "ledger:read"
    OPS_ACTIONS_CREATE = "ops_actions:create"
    OPS_ACTIONS_APPROVE = "ops_actions:approve"
    OPS_ACTIONS_READ = "ops_actions:read"
    DASHBOARD_READ = "dashboard:read"
    DASHBOARD_EDIT = "dashboard:edit"  # edit the own tenant's dashboard widget layout
    RECONCILIATION_MANAGE = "reconciliation:manage"
    SYNC_MANAGE = "sync:manage"
    AUDIT_READ = "audit:read"
    VIEW_AS = "portal:view_as"  # open a read-only, audited "view as" session of a merchant's portal
    AGENTS_READ = "agents:read"  # the agent map; scoped: an agent sees itself, a merchant user its agents
    AGENTS_MANAGE = "agents:manage"  # create agents, set their float and thresholds


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.MERCHANT_ADMIN: frozenset({P.PAYOUTS_READ, P.PAYOUTS_WRITE, P.BALANCES_READ, P.DASHBOARD_READ,
                                    P.DASHBOARD_EDIT, P.AGENTS_READ}),
    Role.MERCHANT_VIEWER: frozenset({P.PAYOUTS_READ, P.BALANCES_READ, P.DASHBOARD_READ, P.AGENTS_READ}),
    Role.FINANCE_OPS: frozenset(
        {P.PAYOUTS_READ, P.BALANCES_READ, P.LEDGER_READ, P.DASHBOARD_READ, P.DASHBOARD_EDIT,
         P.RECONCILIATION_MANAGE, P.OPS_ACTIONS_CREATE, P.OPS_ACTIONS_READ, P.AUDIT_READ, P.VIEW_AS,
         P.AGENTS_READ}
    ),
    Role.TREASURY_OPS: frozenset(
        {P.PAYOUTS_READ, P.PAYOUTS_OPERATE, P.MERCHANTS_MANAGE, P.BALANCES_READ, P.LEDGER_READ,
         P.DASHBOARD_READ, P.DASHBOARD_EDIT, P.OPS_ACTIONS_CREATE, P.OPS_ACTIONS_READ, P.VIEW_AS,
         P.AGENTS_READ, P.AGENTS_MANAGE}
    ),
    Role.RISK_OPS: frozenset(
        {P.PAYOUTS_READ, P.PAYOUTS_OPERATE, P.BALANCES_READ, P.DASHBOARD_READ, P.OPS_ACTIONS_CREATE,
         P.OPS_ACTIONS_READ, P.VIEW_AS, P.AGENTS_READ}
    ),
    Role.OPS_ADMIN: frozenset(Permission),
    Role.APPROVER: frozenset({P.PAYOUTS_READ, P.OPS_ACTIONS_READ, P.OPS_ACTIONS_APPROVE, P.DASHBOARD_READ}),
    # Only the agent map: its own agent (the token's agent_id claim), nothing of any merchant.
    Role.AGENT: frozenset({P.AGENTS_READ}),
    Role.AUDITOR: frozenset(
        {P.PAYOUTS_READ, P.BALANCES_READ, P.LEDGER_READ, P.DASHBOARD_READ, P.OPS_ACTIONS_READ, P.AUDIT_READ,
         P.VIEW_AS, P.AGENTS_READ}
    ),
}


def permissions_of(roles: set[Role] | frozenset[Role]) -> frozenset[Permission]:
    out: set[Permission] = set()
    for role in roles:
        out |= ROLE_PERMISSIONS[role]
    return frozenset(out)


def role_matrix_markdown() -> str:
    roles = list(Role)
    head = "| permission | " + " | ".join(r.value for r in roles) + " |"
    sep = "|---|" + "---|" * len(roles)
    rows = [
        f"| `{p.value}` | " + " | ".join("✓" if p in ROLE_PERMISSIONS[r] else "" for r in roles) + " |"
        for p in Permission
    ]
    return "\n".join([head, sep, *rows])
