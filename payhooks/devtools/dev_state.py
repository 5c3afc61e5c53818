"""Where a running `payhooks dev` says how to reach it, so ops commands need no set-up.

`payhooks dev` writes ``.payhooks-dev/state.json`` in the directory it was started from:
its process id, its receiver and sandbox URLs, and the variables it set (its Redis URL,
which changes every run, and the dev secrets). An ops command run with no ``REDIS_URL``
looks for that file from its working directory upwards and, if that dev instance is
still alive, uses those variables. The file is readable by its owner only (it may hold
secrets exported to `payhooks dev`) and is removed when `payhooks dev` stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = ".payhooks-dev"
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True)
class DevInstance:
    pid: int
    receiver_url: str
    sandbox_url: str
    #: The variables `payhooks dev` set for its receiver and worker.
    env: dict[str, str]
    path: str = ""

    @property
    def healthz_url(self) -> str:
        return f"{self.receiver_url}/healthz"


def write(directory: Path, instance: DevInstance) -> Path:
    state_dir = directory / STATE_DIR
    state_dir.mkdir(mode=0o700, exist_ok=True)
    (state_dir / ".gitignore").write_text("*\n")  # never committed, whatever the repo ignores
    path = state_dir / STATE_FILE
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({k: v for k, v in asdict(instance).items() if k != "path"}, out, indent=2)
    partial.replace(path)  # whole or not at all: a reader never sees half a file
    return path


def remove(path: Path, pid: int) -> None:
    """Remove the state file if it is still ours (a later `payhooks dev` may own it)."""
    instance = _load(path)
    if instance is not None and instance.pid == pid:
        path.unlink(missing_ok=True)


def find(start: Path | None = None) -> DevInstance | None:
    """The live `payhooks dev` of this checkout: from ``start`` (the cwd) upwards."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        path = directory / STATE_DIR / STATE_FILE
        if path.is_file():
            instance = _load(path)
            return instance if instance is not None and _alive(instance.pid) else None
    return None


def environment(base: Mapping[str, str]) -> tuple[dict[str, str], DevInstance | None]:
    """``base``, or, without REDIS_URL, ``base`` with a live dev instance's variables."""
    if base.get("REDIS_URL", "").strip():
        return dict(base), None
    instance = find()
    if instance is None:
        return dict(base), None
    # The instance's values win: they are what its receiver and worker run with.
    return {**base, **instance.env}, instance


def _load(path: Path) -> DevInstance | None:
    try:
        data = json.loads(path.read_text())
        return DevInstance(
            pid=int(data["pid"]),
            receiver_url=str(data["receiver_url"]),
            sandbox_url=str(data["sandbox_url"]),
            env={str(k): str(v) for k, v in dict(data["env"]).items()},
            path=str(path),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process has the id now: not our dev
    try:
        # A dev killed without cleaning up may have its id reused by another program.
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): the id alone has to do
    return not command or b"payhooks" in command  # empty for a moment while it starts
