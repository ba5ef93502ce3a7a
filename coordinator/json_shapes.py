"""One way to turn the public records and events into JSON: ``to_dict()`` gives the JSON
object as a dict, ``to_json()`` the same as a compact string."""

from __future__ import annotations

import json
from typing import Any


class JsonShape:
    """Mixin: a class defines ``to_dict()``; ``to_json()`` follows from it."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))
