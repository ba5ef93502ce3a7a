"""Peers measured beside the coordinator: small election programs on other libraries.

Each peer program runs as a real process and prints one JSON line per step
(``ready``, ``leading``, ``lost``, ``released``) with the host's monotonic clock in ns.
"""
