"""Dashboards: rollups, KPI reads and their short-lived cache."""
