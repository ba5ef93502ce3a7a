"""The README's fakeredis example is real code: run it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_the_fakeredis_example_in_the_readme_passes() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (example,) = [b for b in blocks if "FakeAsyncRedis" in b]
    namespace: dict[str, Any] = {}
    exec(compile(example, str(README), "exec"), namespace)
    await namespace["test_only_one_worker_leads"]()
