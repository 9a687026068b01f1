"""SLA rules: settlement targets keyed by rail, connector, beneficiary country and priority."""
