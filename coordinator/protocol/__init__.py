"""The lease protocol: Redis keys, the Lua scripts and how they are called, and the typed
records they return; heartbeats, modes and events as Redis holds them."""
