"""Many leases per namespace (issue 15, "Many leases"): groundwork only, not wired in yet.

What this package will hold once it is wired into the daemon:

- ``names``: the lease names a namespace registers (``COORDINATOR_LEASES``, brace ranges such
  as ``shard-{0..63}``) and the subset a daemon may hold (``COORDINATOR_LEASE_SELECTOR``);
- ``placement``: a pure function from what every node reads in Redis (registered leases, live
  nodes with their capacity and selector, who holds what, preferred holders) to what ONE node
  should do: acquire free leases, hand surplus ones to nodes under their share;
- ``renew``: one node's renewal of every lease it holds, its heartbeat riding along, in one
  round trip (``lua/renew_many.lua``), typed per lease; built and measured, not called by the
  daemon yet;
- later: the registry in Redis, the per-lease handover (see docs/leases.md for the design).

It may import ``coordinator.protocol.keys``, ``coordinator.errors`` and ``coordinator.settings`` (for
the rule a name follows and the error that names a setting), and, in ``renew`` only, the
lease protocol it builds on (``coordinator.protocol.scripts``, ``coordinator.protocol.lease``,
``coordinator.protocol.membership``); nothing of the daemon or CLI. Nothing here reads the environment;
only ``renew`` talks to Redis.
"""
