"""System health as one merchant sees it: webhook deliveries, its API requests, payops's uptime."""
