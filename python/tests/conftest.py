"""Fixtures: a fresh HOME, config file and inventory per test (so the CLI and the API share them), and conf dicts
for moto S3 (BAKTHAT_TEST_S3_ENDPOINT, started by scripts/test.sh; a missing server is a failure, not a skip)."""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

import bakthat
from bakthat import events


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh HOME with ~/.bakthat.yml storing into a local directory, and its own inventory; cwd is a scratch
    directory."""
    home = tmp_path / "home"
    home.mkdir()
    store = tmp_path / "store"
    config = home / ".bakthat.yml"
    config.write_text(f"default:\n  local_path: {store}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BAKTHAT_DB", str(tmp_path / "inventory.sqlite"))
    monkeypatch.delenv("BAKTHAT_CONFIG", raising=False)
    monkeypatch.delenv("BAKTHAT_PASSWORD", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    events.clear()
    yield home
    events.clear()


def s3_endpoint():
    endpoint = os.environ.get("BAKTHAT_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.fail("BAKTHAT_TEST_S3_ENDPOINT is not set: run scripts/python-test.sh through scripts/test.sh "
                    "(it starts moto), or `eval \"$(scripts/moto-server.sh env)\"` first")
    return endpoint


@pytest.fixture
def s3conf(home):
    """A 0.6-style profile dict for a fresh bucket on moto."""
    return {
        "access_key": "test",
        "secret_key": "test",
        "region_name": "us-east-1",
        "s3_bucket": f"py-{uuid.uuid4().hex[:16]}",
        "glacier_vault": "unused",
        "endpoint_url": s3_endpoint(),
        "default_destination": "s3",
    }


@pytest.fixture(params=["local", "s3"])
def store_conf(request, home):
    """Each 0.6 example runs against the local store (the config file) and moto S3 (a conf dict)."""
    if request.param == "local":
        return {}
    return request.getfixturevalue("s3conf")


def bakthat_cli(*args, env=None, cwd=None, input=None):
    """Runs the package's `bakthat` command (the CLI in-process with the plugin host); returns CompletedProcess."""
    exe = shutil.which("bakthat", path=os.path.dirname(sys.executable))
    assert exe, f"the package's bakthat command is not beside {sys.executable}"
    return subprocess.run([exe, *args], env=env, cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def cli():
    return bakthat_cli
