"""Mobile-money agents: the agent map (nearby search, clusters), floats and low-float alerts."""
