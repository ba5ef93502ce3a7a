"""Many leases per namespace (issue 15): a registry of named leases, each placed on one live
node, every one with the single lease's guarantees.

- ``names``: ``COORDINATOR_LEASES`` (brace ranges such as ``shard-{0..63}``) and
  ``COORDINATOR_LEASE_SELECTOR`` (the globs of the leases a node may hold);
- ``registry``: the registry in Redis (``lua/leases_change.lua``): add, remove, list;
- ``view``: what a node reads once per round to plan (registry, holders, live nodes);
- ``placement``: the pure plan, from that view to what one node does;
- ``renew``: one node's renewal of every lease it holds, heartbeat riding along, one call;
- ``node``, ``node_events``, ``node_status``: the node (``LeaseNode``), what it hears, its status;
- ``member``: one held lease, run by the single lease's daemon code, driven by the node.

It builds on the lease protocol (``coordinator.protocol``) and the daemon
(``coordinator.daemon``); the CLI (``coordinator.cli.leases``, ``cli.run_leases``) builds on it.
"""
