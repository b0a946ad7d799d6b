"""The flows in service: loaded from a folder, checked, versioned, reloaded when files change.

A changed file is checked before it replaces anything: a bad one is refused (logged with
file, line and reason) and the running version stays. A call keeps the ``Flow`` object it
started with, so calls in progress finish on their version.

Every accepted version is kept on disk, in ``<flows>/.versions/<flow>/<NNNN>-<digest>.yaml``,
so the history survives restarts; a version's number follows its text (the same text again
is the same version). ``rollback`` writes an earlier version's text back to the flow's file
and serves it, so the rollback survives a restart too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

from ccorch.ivr import tts
from ccorch.ivr.flow import Flow, FlowError, load_flow, parse_flow

log = logging.getLogger(__name__)

HISTORY = ".versions"  # under the flows folder: every accepted version's text
LAYOUT = ".layout"  # under the flows folder: where the editor drew each flow's nodes


class FlowStore:
    def __init__(
        self, folder: Path, *, check_voices: bool = True, queues: set[str] | None = None
    ) -> None:
        self.folder = folder
        self.queues = queues
        self.check_voice = tts.voice_problem if check_voices else None
        self.by_name: dict[str, Flow] = {}
        self.versions: dict[str, dict[int, Flow]] = {}  # loaded in this process, by number
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

    def check(self, text: str, filename: str, name: str | None = None) -> Flow:
        """A text checked as an upload would be (and, given ``name``, that it is that flow),
        nothing written; raises ``FlowError``."""
        if Path(filename).name != filename or Path(filename).suffix not in (".yaml", ".yml"):
            raise FlowError([(filename, 0, "a flow file is <name>.yaml, in the flows folder")])
        path = self.folder / filename
        flow = parse_flow(
            text, str(path), base_dir=self.folder, check_voice=self.check_voice, queues=self.queues
        )
        if name is not None and flow.name != name:
            raise FlowError([(str(path), 1, f"the text says flow: {flow.name!r}, not {name!r}")])
        clash = self._dnis_clash(flow)
        if clash is not None:
            raise FlowError([(str(path), 0, clash)])
        return flow

    def upload(self, text: str, filename: str, name: str | None = None) -> Flow:
        """A new version from the API: checked (and, given ``name``, that it is that flow),
        written to the folder, then served."""
        flow = self.check(text, filename, name)
        path = self.folder / filename
        tmp = path.with_suffix(".uploading")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self.files[path] = (path.stat().st_mtime, flow.name)
        self.errors.pop(str(path), None)
        self._accept(flow)
        return self.by_name[flow.name]

    def history(self, name: str) -> list[tuple[int, str, float]]:
        """The flow's versions kept on disk: (number, sha256 prefix, when kept), oldest first."""
        if Path(name).name != name or name.startswith("."):
            return []  # a name from a URL is never a way out of the versions folder
        folder = self.folder / HISTORY / name
        out: list[tuple[int, str, float]] = []
        for f in folder.glob("*.yaml") if folder.is_dir() else ():
            number, _, digest = f.stem.partition("-")
            if number.isdigit() and digest:
                out.append((int(number), digest, f.stat().st_mtime))
        return sorted(out)

    def source(self, name: str, version: int) -> str:
        for number, digest, _ in self.history(name):
            if number == version:
                path = self.folder / HISTORY / name / f"{number:04d}-{digest}.yaml"
                return path.read_text(encoding="utf-8")
        raise KeyError(f"flow {name!r} has no version {version}")

    def rollback(self, name: str, version: int) -> Flow:
        """Serve an earlier version again: its text goes back into the flow's file."""
        text = self.source(name, version)
        current = self.by_name.get(name)
        filename = Path(current.path).name if current is not None else f"{name}.yaml"
        flow = self.upload(text, filename)
        log.info("flow rolled back", extra={"flow": name, "version": flow.version})
        return flow

    def layout(self, name: str) -> dict[str, dict[str, float]]:
        """Where the flow editor drew the flow's nodes ({node: {x, y}}); kept beside the
        flow, not in it, so the interpreter's schema and the file stay as written."""
        path = self._layout_path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_layout(self, name: str, positions: dict[str, dict[str, float]]) -> None:
        path = self._layout_path(name)
        if path is None:
            raise KeyError(f"no flow {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".saving")
        tmp.write_text(json.dumps(positions, sort_keys=True), encoding="utf-8")
        tmp.replace(path)

    def _layout_path(self, name: str) -> Path | None:
        if Path(name).name != name or name.startswith("."):
            return None  # a name from a URL is never a way out of the folder
        return self.folder / LAYOUT / f"{name}.json"

    def _dnis_clash(self, flow: Flow) -> str | None:
        for other in self.by_name.values():
            clash = set(other.dnis) & set(flow.dnis)
            if other.name != flow.name and clash:
                return f"service numbers {', '.join(sorted(clash))} belong to flow {other.name!r}"
        return None

    def _accept(self, flow: Flow) -> bool:
        current = self.by_name.get(flow.name)
        if current is not None and current.digest == flow.digest:
            return False
        clash = self._dnis_clash(flow)
        if clash is not None:
            log.error("flow refused: " + clash, extra={"flow": flow.name})
            return False
        loaded = self.versions.setdefault(flow.name, {})
        kept = self.history(flow.name)
        same = [n for n, d, _ in kept if flow.digest.startswith(d)]
        if same:
            number = same[-1]
        else:
            number = (kept[-1][0] if kept else 0) + 1
            folder = self.folder / HISTORY / flow.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{number:04d}-{flow.digest[:16]}.yaml").write_text(
                flow.source, encoding="utf-8"
            )
        # The same version loaded before in this process: serve that very object.
        known = loaded.get(number)
        flow = known if known is not None and known.digest == flow.digest else flow
        flow = replace(flow, version=number) if flow.version != number else flow
        loaded[number] = flow
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
