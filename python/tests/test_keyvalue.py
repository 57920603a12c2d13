"""KeyValue: 0.6's example on moto, and objects written by the CLI's `kv` and by bakthat 0.6 (gzipped JSON)."""

import gzip
import json
import os
import urllib.error
import urllib.request
import uuid

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


def fetch(url, method, data=None):
    """(status, body) of one request, error statuses included."""
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_key_urls_for_put_get_head_and_delete(s3conf):
    """Issue 14: 0.6's get_key_url(key, expires_in, method) took any method (boto's generate_url); only GET worked
    here. Each URL is used for what it is for."""
    kv = KeyValue(conf=s3conf)
    kv.set_key("first", 1)  # makes the bucket
    # PUT may create the key; what it uploads is read back by get_key (plain JSON, as a 0.6 object).
    put = kv.get_key_url("via-url", 60, method="PUT")
    assert "X-Amz-Signature=" in put
    assert fetch(put, "PUT", json.dumps({"put": "through a URL"}).encode())[0] == 200
    assert kv.get_key("via-url") == {"put": "through a URL"}
    status, body = fetch(kv.get_key_url("via-url", 60, "get"), "GET")
    assert (status, json.loads(body)) == (200, {"put": "through a URL"})
    status, body = fetch(kv.get_key_url("via-url", 60, method="HEAD"), "HEAD")
    assert (status, body) == (200, b"")
    assert fetch(kv.get_key_url("via-url", 60, method="DELETE"), "DELETE")[0] == 204
    assert kv.get_key("via-url") is None
    # GET, HEAD and DELETE URLs need the key; other methods are refused.
    with pytest.raises(bakthat.StoreError, match="via-url"):
        kv.get_key_url("via-url", 60, method="HEAD")
    with pytest.raises(bakthat.BakthatError, match="GET, PUT, DELETE or HEAD"):
        kv.get_key_url("via-url", 60, method="POST")


def test_a_tampered_key_url_is_refused_by_a_server_that_checks_signatures(home):
    """moto accepts any signature: the Swift all-in-one's s3api checks SigV4 (scripts/swift-aio.sh)."""
    endpoint = os.environ.get("BAKTHAT_TEST_SWIFT_S3_ENDPOINT")
    if not endpoint:
        pytest.fail("BAKTHAT_TEST_SWIFT_S3_ENDPOINT is not set: run this through scripts/test.sh (it starts Swift)")
    conf = {"access_key": "test:tester", "secret_key": "testing", "region_name": "us-east-1",
            "s3_bucket": f"pykv-{uuid.uuid4().hex[:12]}", "endpoint_url": endpoint}
    kv = KeyValue(conf=conf)
    kv.set_key("signed", {"a": 1})
    put = kv.get_key_url("signed", 60, method="PUT")
    tampered = put.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert fetch(tampered, "PUT", b'{"a": 2}')[0] == 403
    assert kv.get_key("signed") == {"a": 1}
    assert fetch(put, "PUT", b'{"a": 3}')[0] == 200
    assert kv.get_key("signed") == {"a": 3}
    assert fetch(kv.get_key_url("signed", 60).replace("/signed?", "/other?"), "GET")[0] == 403
    assert fetch(kv.get_key_url("signed", 60, "DELETE"), "DELETE")[0] == 204


@pytest.mark.parametrize("profile", [{}, {"default_destination": "swift", "auth_url": "http://127.0.0.1:1/auth/v1.0",
                                          "access_key": "a:b", "secret_key": "c", "s3_bucket": "container"}])
def test_keyvalue_on_a_local_or_swift_profile_says_it_needs_s3(home, profile):
    # 0.6's KeyValue was S3 only; a local or Swift profile gets one clear line, not a connection error.
    kv = KeyValue(conf=profile)
    for call in (lambda: kv.set_key("k", 1), lambda: kv.get_key("k"), lambda: kv.get_key_url("k", 60)):
        with pytest.raises(bakthat.ConfigError, match="KeyValue keeps its values in S3"):
            call()
