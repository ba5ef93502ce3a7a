"""``coordinator bench``: lease latency, Redis CPU, watch latency, failover and the peers.

One module per part (``latency``, ``scale``, ``watch_latency``, ``failover``, ``idle``,
``peers``), ``runner`` runs the chosen parts in a namespace of their own and cleans it up,
``report``/``render`` turn the figures into a table.
"""
