"""``coordinator pause | drain | resume``: set the namespace's automation mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, fail

if TYPE_CHECKING:
    from coordinator.protocol.modes import AutomationMode
    from coordinator.settings import Settings

MODE_COMMANDS: dict[str, tuple[AutomationMode, str]] = {  # the parser needs only these
    "pause": ("paused", "stop scheduling new work (the leader keeps its lease)"),
    "drain": ("draining", "let started work finish, start nothing new"),
    "resume": ("running", "schedule normally again"),
}


async def mode_command(settings: Settings, mode: AutomationMode, lease: str | None = None) -> int:
    """Set ``mode`` (the namespace's, or ``lease``'s own) and print what changed; 1 with a
    one-line error if Redis refuses."""
    from coordinator.connection.backend import connect
    from coordinator.errors import CoordinatorError
    from coordinator.protocol.modes import set_automation_mode

    redis: Any = connect(settings, op_timeout=2.0)
    try:
        change = await set_automation_mode(redis, settings.namespace, mode,
                                           history_maxlen=settings.history_maxlen, lease=lease)
    except CoordinatorError as e:
        return fail(f"cannot set the automation mode on {settings.redis_url_redacted}: {e}",
                    EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
    what = "automation mode" if lease is None else f"lease {lease}: automation mode"
    if change.changed:
        print(f"{what}: {change.previous_mode} -> {change.mode}")
    else:
        print(f"{what}: {change.mode} (unchanged)")
    return EXIT_OK
