"""The leader-only child (``coordinator run -- CMD``) and its watchdog process, which ends the
child by the lease's deadline even when the daemon is frozen or dead."""
