"""redis-py's exception classes, loaded the first time one is named.

Importing redis-py costs a command's start-up most of its time; ``coordinator status`` reads
Redis through the standard-library client (``coordinator/connection/resp_client.py``) and
must not pay for it. The modules on its path name redis-py's classes only in ``except``
clauses and ``isinstance`` checks, which Python evaluates when an exception is on its way:
through this module, redis-py loads then, or never."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names mypy sees; at run time ``__getattr__`` fetches them
    from redis.exceptions import ConnectionError as ConnectionError
    from redis.exceptions import NoPermissionError as NoPermissionError
    from redis.exceptions import NoScriptError as NoScriptError
    from redis.exceptions import RedisError as RedisError
    from redis.exceptions import ResponseError as ResponseError
    from redis.exceptions import TimeoutError as TimeoutError

    Unavailable = tuple[type[ConnectionError], type[TimeoutError], type[OSError]]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # the import system asks for __path__ and the like: no class
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from redis import exceptions

    return getattr(exceptions, name)


def unavailable() -> Unavailable:
    """The exceptions that mean Redis could not be reached or did not answer in time."""
    from redis import exceptions

    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
