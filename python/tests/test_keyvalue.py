"""KeyValue: 0.6's example on moto, and objects written by the CLI's `kv` and by bakthat 0.6 (gzipped JSON)."""

import gzip
import json
import os
import urllib.request

import boto3
import pytest

import bakthat
from bakthat.helper import KeyValue


def test_keyvalue_example(s3conf):
    bakthat_conf = s3conf
    kv = KeyValue(conf=bakthat_conf)
    kv.set_key("mykey", {"some": "data"})
    assert kv.get_key("mykey") == {"some": "data"}
    url = kv.get_key_url("mykey", 60)
    with urllib.request.urlopen(url) as r:
        assert json.loads(gzip.decompress(r.read())) == {"some": "data"}
    kv.set_key("my_encrypted_key", "myvalue", password="mypassword")
    assert kv.get_key("my_encrypted_key", password="mypassword") == "myvalue"
    kv.set_key("my_non_compressed_key", {"my": "data"}, compress=False)
    assert kv.get_key("my_non_compressed_key") == {"my": "data"}
    assert kv.delete_key("mykey") is True
    assert kv.get_key("mykey") is None
    assert kv.get_key("mykey", default=7) == 7
    with pytest.raises(bakthat.PasswordError):
        kv.get_key("my_encrypted_key")
    with pytest.raises(bakthat.PasswordError, match="wrong password"):
        kv.get_key("my_encrypted_key", password="nope")


def config_file(home, conf):
    path = home / ".bakthat.yml"
    path.write_text("default:\n" + "".join(f"  {k}: {v}\n" for k, v in conf.items()))
    return path


def test_reads_what_the_cli_kv_wrote_and_the_reverse(home, s3conf, cli):
    config_file(home, s3conf)
    env = dict(os.environ)
    r = cli("kv", "set", "from-cli", '{"n": [1, 2, 3]}', env=env)
    assert r.returncode == 0, r.stderr
    env["BAKTHAT_PASSWORD"] = "pw"
    r = cli("kv", "set", "from-cli-enc", '"secret"', env=env)
    assert r.returncode == 0, r.stderr
    kv = KeyValue()  # the config file's default profile, as the CLI
    assert kv.get_key("from-cli") == {"n": [1, 2, 3]}
    assert kv.get_key("from-cli-enc", password="pw") == "secret"
    # And the CLI reads what Python wrote.
    KeyValue(conf=s3conf).set_key("from-python", {"ok": True}, password="pw")
    r = cli("kv", "get", "from-python", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ok": True}


def test_reads_an_object_bakthat_06_wrote(s3conf):
    # 0.6 stored gzip(json.dumps(value)) under the key with no metadata; a fresh client decodes it from the bytes.
    s3 = boto3.client("s3", endpoint_url=s3conf["endpoint_url"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    kv = KeyValue(conf=s3conf)
    kv.set_key("bucket-made", 1)  # makes the bucket
    s3.put_object(Bucket=s3conf["s3_bucket"], Key="legacy", Body=gzip.compress(json.dumps({"v": 6}).encode()))
    assert kv.get_key("legacy") == {"v": 6}
