"""Debugging tools: layer-wise comparison, intermediate values, and reducing a failing model."""
