"""Watching a namespace: the watcher (resync, replay, expiry), the capped history and the
cluster-wide status."""
