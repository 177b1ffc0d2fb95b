"""Wheels for an environment's pins, into a package's `packages/`.

Each pin comes from `--find-links` when it has a compatible wheel, else from the index
(`pip download --only-binary`); a dependency that exists only as an sdist is built into a
wheel here, at pack time, so the air-gapped side never builds a dependency.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from cra.errors import CraError
from cra.repos.wheels import best_wheel, parse_pin
from cra.tools import ToolError, pip_argv, run_tool, tool_env, uv_binary


class FetchError(CraError):
    """A pin could not be had as a wheel (no wheel, or its sdist failed to build)."""


class WheelFetcher:
    """Puts one wheel per pin into `packages/`: from --find-links, the index, or a build."""

    def __init__(
        self, dest: Path, *, python: str, find_links: Path | None, use_index: bool, uv_cache: Path
    ) -> None:
        self.dest = dest
        self.python = python
        self.find_links = find_links
        self.use_index = use_index
        self.uv_cache = uv_cache
        self.copied = self.downloaded = self.built = 0
        dest.mkdir(parents=True, exist_ok=True)
        self._local = sorted(p.name for p in find_links.iterdir()) if find_links else []

    def fetch(self, pin: str) -> str:
        """The file name in `packages/` of a wheel that satisfies `pin`."""
        have = best_wheel(pin, (p.name for p in self.dest.iterdir()), self.python)
        if have:
            return have
        local = best_wheel(pin, self._local, self.python)
        if local and self.find_links is not None:
            tmp = self.dest / f".{local}.tmp"
            shutil.copyfile(self.find_links / local, tmp)
            tmp.replace(self.dest / local)
            self.copied += 1
            return local
        sdist = self._local_sdist(pin)
        if sdist is not None:
            return self._build(pin, sdist)
        if self.use_index:
            return self._download(pin)
        raise FetchError(
            f"no wheel or sdist of {pin} for Python {self.python} in {self.find_links}",
            hint="add it to the --find-links folder, or allow the index with --index",
        )

    def _local_sdist(self, pin: str) -> Path | None:
        parsed = parse_pin(pin)
        if parsed is None or self.find_links is None:
            return None
        name, version = parsed
        for file in self._local:
            match = re.match(r"^(.+)-([^-]+)\.(tar\.gz|zip)$", file)
            if (
                match
                and re.sub(r"[-_.]+", "-", match.group(1)).lower() == name
                and match.group(2) == str(version)
            ):
                return self.find_links / file
        return None

    def _new_wheel(self, before: set[str], pin: str) -> str:
        after = {p.name for p in self.dest.iterdir()} - before
        found = best_wheel(pin, after, self.python)
        if not found:
            raise FetchError(f"fetching {pin} gave no usable wheel for Python {self.python}")
        return found

    def _build(self, pin: str, sdist: Path | None) -> str:
        uv = uv_binary()
        before = {p.name for p in self.dest.iterdir()}
        with tempfile.TemporaryDirectory(prefix="cra-build-") as tmp:
            if sdist is None:
                run_tool(
                    [*pip_argv(), "download", "--no-deps", "--no-binary=:all:", "--dest", tmp, pin],
                    what=f"downloading the sdist of {pin}",
                    env=tool_env(self.uv_cache),
                )
                sdists = list(Path(tmp).iterdir())
                if not sdists:
                    raise FetchError(f"the index has no wheel and no sdist of {pin}")
                sdist = sdists[0]
            argv = [str(uv), "build", "--wheel", "--out-dir", str(self.dest), str(sdist)]
            if self.find_links is not None:
                argv += ["--find-links", str(self.find_links)]
            if not self.use_index:
                argv.append("--no-index")
            try:
                run_tool(argv, what=f"building a wheel of {pin}", env=tool_env(self.uv_cache))
            except ToolError as exc:
                raise FetchError(
                    f"building a wheel from the sdist {sdist.name} (for {pin}) failed: "
                    f"{build_failure(exc.output)}",
                    hint="the era is retried with a later bound; pin a version that has a "
                    "wheel for this Python with --requirement",
                ) from None
        self.built += 1
        return self._new_wheel(before, pin)

    def _download(self, pin: str) -> str:
        before = {p.name for p in self.dest.iterdir()}
        argv = [
            *pip_argv(),
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            self.python,
            "--dest",
            str(self.dest),
            pin,
        ]
        try:
            run_tool(argv, what=f"downloading {pin}", env=tool_env(self.uv_cache))
        except ToolError as exc:
            if "No matching distribution" not in exc.output and "none" not in exc.output:
                raise
            return self._build(pin, None)
        self.downloaded += 1
        return self._new_wheel(before, pin)


def build_failure(output: str, keep: int = 12) -> str:
    """The lines of a failed build that say why: errors first, else its last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    telling = [ln for ln in lines if re.search(r"error|Error|failed|No module", ln)]
    chosen = (telling or lines)[-keep:]
    return " | ".join(chosen) if chosen else "no output"
