"""Fixtures of the deployment tests: the template through the SAM translator, and copies of the
tree before and after the teardown."""

from __future__ import annotations

import pytest

from tests.support.template import transform_offline


@pytest.fixture(scope="module")
def transformed(request) -> dict:
    """template.yaml after the SAM transform, with the parameter values in the requesting test
    module's REQUIRED (tests/deploy/test_template.py)."""
    return transform_offline(request.module.REQUIRED)


# admin-route:begin
@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A copy of the tree as git would check it out."""
    from tests.support.paths import ROOT
    from tests.support.rehearsal import copy_tree, tree_files

    return copy_tree(ROOT, tree_files(ROOT), tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def torn(pristine, tmp_path_factory):
    """Another copy, after `make teardown-admin-route`: (its root, the completed teardown)."""
    import shutil
    import subprocess
    import sys

    from tests.support.rehearsal import SCRIPT, copy_tree, tree_files

    dst = copy_tree(pristine, tree_files(pristine), tmp_path_factory.mktemp("torn"))
    cmd = ["make", "-C", str(dst), "teardown-admin-route"] if shutil.which("make") \
        else [sys.executable, str(dst / SCRIPT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dst, proc
# admin-route:end
