"""The flows in service: loaded from a folder, checked, versioned, reloaded when files change.

A changed file is checked before it replaces anything: a bad one is refused (logged with
file, line and reason) and the running version stays. A call keeps the ``Flow`` object it
started with, so calls in progress finish on their version. Every accepted version is kept
(``versions``) and can be brought back (``rollback``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from ccorch.ivr import tts
from ccorch.ivr.flow import Flow, FlowError, load_flow, parse_flow

log = logging.getLogger(__name__)


class FlowStore:
    def __init__(
        self, folder: Path, *, check_voices: bool = True, queues: set[str] | None = None
    ) -> None:
        self.folder = folder
        self.queues = queues
        self.check_voice = tts.voice_problem if check_voices else None
        self.by_name: dict[str, Flow] = {}
        self.versions: dict[str, list[Flow]] = {}
        self.files: dict[Path, tuple[float, str | None]] = {}  # path -> (mtime, flow name)
        self.errors: dict[str, list[tuple[str, int, str]]] = {}

    def for_dnis(self, dnis: str) -> Flow | None:
        for f in self.by_name.values():
            if dnis in f.dnis:
                return f
        return None

    def scan(self) -> list[str]:
        """Load new and changed files; returns the names of flows that changed."""
        changed: list[str] = []
        seen: set[Path] = set()
        for path in sorted(self.folder.glob("*.yaml")) + sorted(self.folder.glob("*.yml")):
            seen.add(path)
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            known = self.files.get(path)
            if known is not None and known[0] == mtime:
                continue
            try:
                flow = load_flow(path, check_voice=self.check_voice, queues=self.queues)
            except FlowError as e:
                self.files[path] = (mtime, known[1] if known else None)
                self.errors[str(path)] = e.problems
                log.error(
                    "flow refused; the running version stays",
                    extra={
                        "file": str(path),
                        "problems": [f"{f}:{n}: {r}" for f, n, r in e.problems],
                    },
                )
                continue
            self.errors.pop(str(path), None)
            self.files[path] = (mtime, flow.name)
            if self._accept(flow):
                changed.append(flow.name)
        for path in set(self.files) - seen:  # a deleted file keeps serving: say so
            log.warning(
                "flow file removed; its last version keeps serving", extra={"file": str(path)}
            )
            del self.files[path]
        return changed

    def upload(self, text: str, filename: str) -> Flow:
        """A new version from the API: checked, written to the folder, then served."""
        path = self.folder / filename
        flow = parse_flow(
            text, str(path), base_dir=self.folder, check_voice=self.check_voice, queues=self.queues
        )
        tmp = path.with_suffix(".uploading")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self.files[path] = (path.stat().st_mtime, flow.name)
        self._accept(flow)
        return self.by_name[flow.name]

    def rollback(self, name: str, version: int) -> Flow:
        for f in self.versions.get(name, []):
            if f.version == version:
                self.by_name[name] = f
                log.info("flow rolled back", extra={"flow": name, "version": version})
                return f
        raise KeyError(f"flow {name!r} has no version {version}")

    def _accept(self, flow: Flow) -> bool:
        current = self.by_name.get(flow.name)
        if current is not None and current.digest == flow.digest:
            return False
        for other in self.by_name.values():
            clash = set(other.dnis) & set(flow.dnis)
            if other.name != flow.name and clash:
                log.error(
                    "flow refused: its service numbers belong to another flow",
                    extra={"flow": flow.name, "other": other.name, "dnis": sorted(clash)},
                )
                return False
        history = self.versions.setdefault(flow.name, [])
        flow = replace(flow, version=len(history) + 1)
        history.append(flow)
        self.by_name[flow.name] = flow
        log.info(
            "flow loaded",
            extra={"flow": flow.name, "version": flow.version, "dnis": list(flow.dnis)},
        )
        return True

    async def watch(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.scan)
            except Exception:
                log.exception("flow scan failed")
