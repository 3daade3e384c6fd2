"""S3/R2 storage against a real S3-compatible HTTP endpoint on loopback (moto in server mode)."""
import os
import time
import urllib.request

import pytest

from service_helpers import free_port, http, make_server
from service_nodes import workflow

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "testing", "testing"
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    import boto3
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="vibe-test")
    return client


def _storage(s3_endpoint, **kw):
    from vibeboard_runner.storage import S3Storage
    return S3Storage("vibe-test", prefix=kw.pop("prefix", "renders"), endpoint_url=s3_endpoint, region_name="auto",
                     access_key_id="testing", secret_access_key="testing", **kw)


def _wait_job(srv, job_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = http("GET", f"{srv.url}/vibeboard/jobs/{job_id}")[1]
        if job["status"] not in ("queued", "running", "uploading"):
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


def test_server_pushes_png_and_mp4_with_content_types(tmp_path, s3_endpoint, bucket):
    srv = make_server(tmp_path, storage=_storage(s3_endpoint))
    try:
        for kind, ctype, magic in (("png", "image/png", b"\x89PNG"), ("mp4", "video/mp4", None)):
            status, body, _ = http("POST", srv.url + "/vibeboard/jobs", {"workflow": workflow(value=3, kind=kind)})
            assert status == 201, body
            job = _wait_job(srv, body["job_id"])
            assert job["status"] == "success", job
            out = job["outputs"][0]
            assert out["key"] == f"renders/{body['job_id']}/9/svc/{out['filename']}"
            obj = bucket.get_object(Bucket="vibe-test", Key=out["key"])
            data = obj["Body"].read()
            local = open(os.path.join(srv.dirs["output"], out["subfolder"], out["filename"]), "rb").read()
            assert data == local and obj["ContentType"] == ctype
            if magic:
                assert data.startswith(magic)
            else:
                assert data[4:8] == b"ftyp"  # a real MP4 container
            # the presigned URL downloads the same bytes without credentials
            with urllib.request.urlopen(out["url"], timeout=10) as response:
                assert response.read() == local
            # history carries the URLs too
            hist = http("GET", f"{srv.url}/history/{body['job_id']}")[1][body["job_id"]]
            assert hist["vibeboard"]["files"][0]["url"] == out["url"]
    finally:
        srv.stop_thread()


def test_multipart_above_threshold(tmp_path, s3_endpoint, bucket):
    mib = 1024 * 1024
    storage = _storage(s3_endpoint, multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    path = tmp_path / "big.bin"
    payload = os.urandom(11 * mib)
    path.write_bytes(payload)
    key = storage.key_for("job-1", "4", "big.bin")
    stored = storage.put_file(str(path), key)
    head = bucket.head_object(Bucket="vibe-test", Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB parts
    assert head["ContentLength"] == len(payload) and stored.size == len(payload)
    assert bucket.get_object(Bucket="vibe-test", Key=key)["Body"].read() == payload
    small = tmp_path / "small.json"
    small.write_text("{}")
    storage.put_file(str(small), "renders/x/small.json")
    assert "-" not in bucket.head_object(Bucket="vibe-test", Key="renders/x/small.json")["ETag"]


def test_keys_never_collide_and_public_url(s3_endpoint, tmp_path):
    storage = _storage(s3_endpoint, public_base_url="https://cdn.example.com/")
    a = storage.key_for("job-a", "9", "out_00001_.png", "svc")
    b = storage.key_for("job-b", "9", "out_00001_.png", "svc")
    assert a != b and a == "renders/job-a/9/svc/out_00001_.png"
    hostile = storage.key_for("../../etc", "9", "../passwd", "../..")
    assert hostile.startswith("renders/") and ".." not in hostile.split("/") and hostile.endswith("/passwd")
    assert storage.url_for(a) == "https://cdn.example.com/renders/job-a/9/svc/out_00001_.png"


def test_failed_upload_is_reported_not_raised(tmp_path):
    from vibeboard_runner.storage import S3Storage, push_outputs
    port = free_port()  # nothing listens here
    storage = S3Storage("b", endpoint_url=f"http://127.0.0.1:{port}", access_key_id="x", secret_access_key="y",
                        max_attempts=1, upload_attempts=2)
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    rows = push_outputs(storage, "j", [{"node": "1", "filename": "a.png", "subfolder": "", "type": "output",
                                        "path": str(f)}])
    assert "failed after 2 attempts" in rows[0]["upload_error"]


def test_config_from_env_and_content_types(tmp_path):
    from vibeboard_runner.storage import LocalStorage, S3Storage, content_type_for, storage_from_config
    env = {"VIBEBOARD_S3_BUCKET": "b", "VIBEBOARD_S3_ENDPOINT": "https://acc.r2.cloudflarestorage.com",
           "VIBEBOARD_S3_PREFIX": "p", "VIBEBOARD_S3_URL_EXPIRY": "3600", "R2_ACCESS_KEY_ID": "k",
           "R2_SECRET_ACCESS_KEY": "s", "VIBEBOARD_S3_MULTIPART_THRESHOLD_MB": "16"}
    storage = storage_from_config(env)
    assert isinstance(storage, S3Storage) and storage.prefix == "p" and storage.url_expiry == 3600
    assert storage.client.meta.region_name == "auto"
    assert storage.transfer_config.multipart_threshold == 16 * 1024 * 1024
    assert storage.client.meta.config.request_checksum_calculation == "when_required"
    local = storage_from_config({}, {"storage": {"kind": "local", "root": str(tmp_path)}})
    assert isinstance(local, LocalStorage)
    expected = {"a.mp4": "video/mp4", "a.png": "image/png", "a.webp": "image/webp", "a.wav": "audio/wav",
                "a.glb": "model/gltf-binary", "a.json": "application/json", "a.ply": "application/ply",
                "a.gif": "image/gif", "a.unknownext": "application/octet-stream"}
    for name, ctype in expected.items():
        assert content_type_for(name) == ctype


def test_pack_video_saver_through_server_to_s3(tmp_path, s3_endpoint, bucket):
    """The real pack: LoadImage (base64 job input) → VBSaveVideo; the MP4 lands in the bucket as video/mp4."""
    import base64
    import io
    from PIL import Image
    srv = make_server(tmp_path, storage=_storage(s3_endpoint, prefix="pack"))
    try:
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 100, 0)).save(buf, format="PNG")
        status, body, _ = http("POST", srv.url + "/vibeboard/jobs", {
            "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                         "2": {"class_type": "VBSaveVideo", "inputs": {"images": ["1", 0], "fps": 8.0,
                                                                        "filename_prefix": "vibeboard/t",
                                                                        "crf": 30, "preset": "ultrafast"}}},
            "inputs": {"1.image": {"base64": base64.b64encode(buf.getvalue()).decode(), "filename": "f.png"}}})
        assert status == 201, body
        job = _wait_job(srv, body["job_id"])
        assert job["status"] == "success", job
        out = job["outputs"][0]
        assert out["filename"].endswith(".mp4") and out["content_type"] == "video/mp4"
        obj = bucket.get_object(Bucket="vibe-test", Key=out["key"])
        assert obj["ContentType"] == "video/mp4" and obj["Body"].read()[4:8] == b"ftyp"
    finally:
        srv.stop_thread()
