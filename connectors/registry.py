"""The bank connectors this deployment can route payouts to, by name.

Built once per process (worker, API) from settings and injected where it is needed; tests build
their own registry around connectors pointed at an in-process sandbox bank.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import httpx

from connectors.base import BankConnector
from connectors.sandbox_bank import SandboxBankConnector
from connectors.rails import RAIL_CONNECTORS

if TYPE_CHECKING:
    from core.platform.settings import Settings


class UnknownConnectorError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no bank connector named {self.name!r}"


class ConnectorRegistry:
    def __init__(self, connectors: Iterable[BankConnector] = ()) -> None:
        self._connectors: dict[str, BankConnector] = {}
        for connector in connectors:
            self.register(connector)

    def register(self, connector: BankConnector, *, replace: bool = False) -> None:
        if connector.name in self._connectors and not replace:
            raise ValueError(f"a connector named {connector.name!r} is already registered")
        self._connectors[connector.name] = connector

    def get(self, name: str) -> BankConnector:
        try:
            return self._connectors[name]
        except KeyError:
            raise UnknownConnectorError(name) from None

    def names(self) -> list[str]:
        return sorted(self._connectors)

    def for_rail(self, rail: str) -> list[BankConnector]:
        """Connectors that serve `rail`, in name order (routing picks among them)."""
        return [self._connectors[n] for n in self.names() if self._connectors[n].serves(rail)]

    def __contains__(self, name: object) -> bool:
        return name in self._connectors

    def __iter__(self) -> Iterator[BankConnector]:
        return iter([self._connectors[n] for n in self.names()])

    def __len__(self) -> int:
        return len(self._connectors)

    async def aclose(self) -> None:
        for connector in list(self._connectors.values()):
            await connector.aclose()


def _secrets(settings: Settings, connector: str) -> str | list[str]:
    """The connector's webhook secret, or its list while one is being rotated out."""
    secrets = settings.bank_webhook_secrets_for(connector)
    return secrets[0] if len(secrets) == 1 else secrets


def build_registry(settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> ConnectorRegistry:
    """The connectors `settings` configure: the sandbox bank when PAYOPS_SANDBOX_BANK_URL is set."""
    registry = ConnectorRegistry()
    if settings.sandbox_bank_url:
        registry.register(
            SandboxBankConnector(
                name="sandbox",
                base_url=settings.sandbox_bank_url,
                webhook_secret=_secrets(settings, "sandbox"),
                webhook_tolerance_seconds=settings.bank_webhook_tolerance_seconds,
                http_client=http_client,
            )
        )

        for name, cls, rail in RAIL_CONNECTORS:
            registry.register(cls(
                name=name, rail=rail, base_url=settings.sandbox_bank_url,
                webhook_secret=_secrets(settings, name),
                webhook_tolerance_seconds=settings.bank_webhook_tolerance_seconds, http_client=http_client,
            ))
    return registry
