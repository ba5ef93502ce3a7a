"""The daemon and its pure state machine: one controller's loops, hooks, leader work, the
handover, the thread facade, its HTTP endpoint and metrics."""
