"""Which URLs a merchant webhook may target (the SSRF guard).

A webhook makes payops send requests to an address a merchant chose, so the address must not
reach into our own network: private ranges, link-local, CGNAT, multicast and the cloud metadata
addresses are refused (and hostnames that resolve there), unless
`webhook_allow_private_targets` is set. Loopback is allowed in dev (local receivers, tests),
never in prod. Production accepts only https. Checked on registration and again before every
delivery, since DNS can change in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from core.platform.errors import typed, Unprocessable
from core.platform.settings import Settings

WebhookTargetRefused = typed(Unprocessable, "webhook_target_refused", "Webhook URL not allowed")

# Never a legitimate webhook receiver, whatever the settings say.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "168.63.129.16", "fd00:ec2::254")
)


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: Settings) -> str | None:
    """Why `ip` may not be targeted, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        if settings.env == "dev" or settings.webhook_allow_private_targets:
            return None
        return f"{ip} is a loopback address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a unicast address"
    if not ip.is_global:  # private, link-local, CGNAT, reserved, documentation ranges
        if settings.webhook_allow_private_targets:
            return None
        return f"{ip} is a private or link-local address"
    return None


def check_url_shape(url: str, settings: Settings) -> tuple[str, int]:
    """Scheme, host and credentials; returns (host, port). Raises WebhookTargetRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetRefused(f"not a valid URL: {exc}") from None
    allowed = ("https",) if settings.env == "prod" else ("https", "http")
    if parts.scheme not in allowed:
        raise WebhookTargetRefused(f"the URL must use {' or '.join(allowed)}")
    if not parts.hostname:
        raise WebhookTargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise WebhookTargetRefused("the URL must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        return [literal]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookTargetRefused(f"{host} does not resolve: {exc.strerror}") from None
    return sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)


async def check_webhook_url(url: str, settings: Settings) -> None:
    """Raise WebhookTargetRefused unless `url` may receive webhooks now."""
    host, port = check_url_shape(url, settings)
    addresses = await resolve(host, port)
    if not addresses:
        raise WebhookTargetRefused(f"{host} does not resolve")
    for ip in addresses:
        why = check_address(ip, settings)
        if why is not None:
            raise WebhookTargetRefused(f"{host} is refused: {why}")
