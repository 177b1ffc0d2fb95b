"""An unknown repository, adapter, adapter version or dataset is an error naming the known
ones (non-zero exit), found before anything else the command would check or do."""

from __future__ import annotations

from click.testing import CliRunner

from cra.cli import cli


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_harness_status_rejects_an_unknown_repository_naming_the_known(workspace, packed) -> None:
    """`harness status --repo praso` exits non-zero and names the known `tally`."""
    result = _invoke("harness", "status", "--repo", "praso")
    assert result.exit_code != 0
    assert "no repository 'praso'" in result.output and "known: tally" in result.output
    known = _invoke("harness", "status", "--repo", "tally")
    assert known.exit_code == 0
    assert "tally has not been mined yet" in known.output


def test_adapter_check_and_rollback_reject_a_name_with_no_versions(workspace) -> None:
    """`adapter check|rollback nosuch` fail saying it has no versions, not "no regression"."""
    for command in ("check", "rollback"):
        result = _invoke("adapter", command, "nosuch")
        assert result.exit_code != 0, result.output
        assert "no adapter 'nosuch': it has no registered version" in result.output
        assert "train one with `cra train`" in result.output
        assert "no regression" not in result.output and "--to vK" not in result.output


def test_adapter_eval_rejects_an_unknown_adapter_before_anything(workspace) -> None:
    """`adapter eval nosuch@v1 --dataset nosuch` names the adapter first."""
    result = _invoke("adapter", "eval", "nosuch@v1", "--dataset", "nosuch")
    assert result.exit_code != 0
    assert "no adapter 'nosuch'" in result.output


def test_train_rejects_an_unknown_dataset_before_the_base_model(workspace) -> None:
    """`train --dataset nosuch` complains about the dataset, not the base model."""
    result = _invoke("train", "--dataset", "nosuch", "--adapter", "scope")
    assert result.exit_code != 0
    assert "no dataset 'nosuch'" in result.output
    assert "make one with `cra curate-data`" in result.output
    assert "base" not in result.output.lower().replace("training_datasets", "")
