"""Wheels for an environment's pins, into a package's `packages/`.

Each pin comes from a wheel built earlier in this pack, from `--find-links` when it has a
compatible wheel, else from the index (`pip download --only-binary`, which builds
nothing); a dependency that exists only as an sdist is built into a wheel at pack time,
in the sandbox (`cra.repos.sdist`), so neither the host nor the air-gapped side ever
runs a dependency's build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cra.repos.sdist import FetchError, SdistBuilder, build_failure
from cra.repos.wheels import best_wheel, parse_pin
from cra.tools import ToolError, pip_argv, run_tool, tool_env

__all__ = ["FetchError", "WheelFetcher", "build_failure"]


class WheelFetcher:
    """Puts one wheel per pin into `packages/`: from --find-links, the index, or a
    sandboxed build of its sdist."""

    def __init__(
        self,
        dest: Path,
        *,
        python: str,
        find_links: Path | None,
        use_index: bool,
        uv_cache: Path,
        builder: SdistBuilder,
    ) -> None:
        self.dest = dest
        self.python = python
        self.find_links = find_links
        self.use_index = use_index
        self.uv_cache = uv_cache
        self.builder = builder
        self.copied = self.downloaded = 0
        dest.mkdir(parents=True, exist_ok=True)
        self._local = sorted(p.name for p in find_links.iterdir()) if find_links else []

    @property
    def built(self) -> int:
        """How many wheels were built from sdists (in the sandbox) for this pack."""
        return self.builder.built

    def fetch(self, pin: str) -> str:
        """The file name in `packages/` of a wheel that satisfies `pin`."""
        have = best_wheel(pin, (p.name for p in self.dest.iterdir()), self.python)
        if have:
            return have
        built = best_wheel(pin, (p.name for p in self.builder.out_dir.iterdir()), self.python)
        if built:
            return self._copy(self.builder.out_dir / built)
        local = best_wheel(pin, self._local, self.python)
        if local and self.find_links is not None:
            self.copied += 1
            return self._copy(self.find_links / local)
        if self.use_index:
            downloaded = self._download(pin)
            if downloaded is not None:
                return downloaded
        return self._build(pin)

    def _copy(self, source: Path) -> str:
        tmp = self.dest / f".{source.name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(self.dest / source.name)
        return source.name

    def _build(self, pin: str) -> str:
        """A wheel of `pin` built from its sdist in the sandbox."""
        parsed = parse_pin(pin)
        sdist = None
        if parsed is not None:
            name, version = parsed
            sdist = next((s for s in self.builder.sdists(name) if s.version == version), None)
        if sdist is None:
            where = "the index or " if self.use_index else ""
            raise FetchError(
                f"no wheel or sdist of {pin} for Python {self.python} in "
                f"{where}{self.find_links or 'no --find-links folder'}",
                hint="add it to the --find-links folder, or allow the index with --index",
            )
        wheel = self.builder.build(sdist)
        return self._copy(self.builder.out_dir / wheel)

    def _download(self, pin: str) -> str | None:
        """A wheel of `pin` from the index, None when it has none for this Python."""
        before = {p.name for p in self.dest.iterdir()}
        argv = [*pip_argv(), "download", "--no-deps", "--only-binary=:all:"]
        argv += ["--python-version", self.python, "--dest", str(self.dest), pin]
        try:
            run_tool(argv, what=f"downloading {pin}", env=tool_env(self.uv_cache))
        except ToolError as exc:
            if "No matching distribution" not in exc.output and "none" not in exc.output:
                raise
            return None
        found = best_wheel(pin, {p.name for p in self.dest.iterdir()} - before, self.python)
        if not found:
            raise FetchError(f"fetching {pin} gave no usable wheel for Python {self.python}")
        self.downloaded += 1
        return found
