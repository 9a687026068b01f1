"""One router module per resource; ROUTERS is what the app mounts under /api/v1."""

ROUTERS: list = []

from api.routers import balances, bank_webhooks, merchants, payouts  # noqa: E402

from api.routers import payout_batches, rails  # noqa: E402

# payout_batches before payouts: /payouts/batches must not be read as a payout id
ROUTERS += [merchants.router, balances.router, payout_batches.router, payouts.router, bank_webhooks.router]
ROUTERS.append(bank_webhooks.ops_router)
ROUTERS += [rails.router, rails.connectors_router]
from api.routers import ops_actions; ROUTERS.append(ops_actions.router)  # noqa: E402, E702

from api.routers import events, webhook_endpoints  # noqa: E402

ROUTERS += [webhook_endpoints.router, events.router]

from api.routers import sync  # noqa: E402

ROUTERS.append(sync.router)

from api.routers import alerts, dashboard, dashboard_widgets, exports, live, transactions  # noqa: E402

ROUTERS += [dashboard_widgets.router, dashboard.router, transactions.router, exports.router, alerts.router, live.router]

from api.routers import reconciliation  # noqa: E402

ROUTERS.append(reconciliation.router)

from api.routers import bulk_payouts  # noqa: E402

ROUTERS.append(bulk_payouts.router)

from api.routers import sla  # noqa: E402

ROUTERS.append(sla.router)

from api.routers import api_logs  # noqa: E402

ROUTERS.append(api_logs.router)
from api.routers import payout_schedules  # noqa: E402

ROUTERS.append(payout_schedules.router)

from api.routers import recommendations  # noqa: E402

ROUTERS.append(recommendations.router)

from api.routers import merchant_health  # noqa: E402

ROUTERS.append(merchant_health.router)

from api.routers import merchant_settlement  # noqa: E402

ROUTERS.append(merchant_settlement.router)

from api.routers import portal  # noqa: E402

ROUTERS.append(portal.router)

from api.routers import agents  # noqa: E402

ROUTERS.append(agents.router)
