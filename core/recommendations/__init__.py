"""Recommendations: explainable suggestions computed from payops's own data (issue 20)."""
