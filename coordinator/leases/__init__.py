"""Many leases per namespace (issue 15, "Many leases"): groundwork only, not wired in yet.

What this package will hold once it is wired into the daemon:

- ``names``: the lease names a namespace registers (``COORDINATOR_LEASES``, brace ranges such
  as ``shard-{0..63}``) and the subset a daemon may hold (``COORDINATOR_LEASE_SELECTOR``);
- ``placement``: a pure function from what every node reads in Redis (registered leases, live
  nodes with their capacity and selector, who holds what, preferred holders) to what ONE node
  should do: acquire free leases, hand surplus ones to nodes under their share;
- later: the registry in Redis, the one-script-per-interval renewal of every held lease, the
  per-lease handover (see docs/leases.md for the design; none of that exists yet).

It may import ``coordinator.keys``, ``coordinator.errors`` and ``coordinator.settings`` (for
the rule a name follows and the error that names a setting), nothing of the daemon or CLI.
Nothing here reads the environment or talks to Redis.
"""
