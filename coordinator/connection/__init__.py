"""Reaching Redis: the client (one server, Sentinel, Cluster, TLS), redis-py's errors made
ours, what Redis says about its eviction policy, and following Sentinel's master."""
