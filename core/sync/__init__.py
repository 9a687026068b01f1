"""Provider syncs: schedules, runs and set-based writes of synced data."""
