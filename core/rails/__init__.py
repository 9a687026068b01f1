"""Rails: rules (SLA, fees, calendars, cutoffs), batches and bank files, connector health."""
