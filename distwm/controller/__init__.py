"""Planners and policies that act with a world model (CEM planner, rollout generator)."""
