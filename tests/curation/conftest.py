"""A workspace whose raw.db holds a synthetic log written through cra's own writers."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest

from cra.fixtures.logs import SyntheticLog, build_synthetic_log
from cra.workspace import Workspace
from tests.curation.helpers import TEACHER, with_teacher


@pytest.fixture
def make_log(workspace: Workspace) -> Callable[..., tuple[Workspace, SyntheticLog]]:
    """Write a synthetic log into the test's workspace; returns it (teacher configured)."""

    def make(**kwargs: Any) -> tuple[Workspace, SyntheticLog]:
        ws = with_teacher(workspace)
        with closing(ws.raw_db()) as conn:
            log = build_synthetic_log(conn, teacher_model=TEACHER, **kwargs)
        return ws, log

    return make
