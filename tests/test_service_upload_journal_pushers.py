"""Every pusher of outputs journals its keys (upload_journal.py), against moto's S3 server on loopback:
`vibeboard run --push` (cli.py), a remote run that publishes (remote_comfyui.py) and the farm worker's job
(farm/worker.py, its push called directly: no Temporal needed). For each:
  (a) a normal push leaves the journal empty;
  (b) an upload that fails with its multipart upload still open (the transfer manager's own abort did not get
      through) is aborted at once: no open upload, no journal row, the failure reported for that file;
  (c) a process killed mid-upload (a real process: journals the key, opens a multipart upload, SIGKILLs itself)
      leaves a row that the pusher's next start aborts.
And a start never aborts an upload another live process on the same state folder is still sending."""
import json
import os
import signal
import subprocess
import sys

import pytest

from service_helpers import make_server, start_moto
from service_nodes import workflow

pytest.importorskip("moto.server")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "pushers"
PUSHERS = ("cli", "remote", "farm")

# A pusher killed mid-upload: its key journalled, a multipart upload open with one part sent, then SIGKILL.
# With "wait" it stays alive instead (an upload still running in another process) until stdin closes.
UPLOADER = """
import os, signal, sys, boto3
from vibeboard_runner.upload_journal import UploadJournal
journal_path, endpoint, key, mode = sys.argv[1:5]
UploadJournal(journal_path).journal_add(key, "other-job")
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
upload = s3.create_multipart_upload(Bucket="%s", Key=key)
s3.upload_part(Bucket="%s", Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 4096)
print("uploading", flush=True)
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()
""" % (BUCKET, BUCKET)


@pytest.fixture(scope="module")
def moto():
    server, port, client = start_moto(BUCKET)
    yield f"http://127.0.0.1:{port}", client
    server.stop()


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("remote-comfy"))
    yield srv
    srv.stop_thread()


@pytest.fixture
def env(tmp_path, monkeypatch, moto, request):
    """S3 storage settings in the environment (what `vibeboard run --push` reads), one key prefix per test."""
    endpoint, _ = moto
    prefix = request.node.name.replace("[", "-").replace("]", "")
    for key in [k for k in os.environ if k.startswith("VIBEBOARD_")]:
        monkeypatch.delenv(key)
    for key, value in {"VIBEBOARD_S3_BUCKET": BUCKET, "VIBEBOARD_S3_ENDPOINT": endpoint,
                       "VIBEBOARD_S3_ACCESS_KEY_ID": "testing", "VIBEBOARD_S3_SECRET_ACCESS_KEY": "testing",
                       "VIBEBOARD_S3_PREFIX": prefix, "VIBEBOARD_S3_MAX_ATTEMPTS": "1",
                       "VIBEBOARD_STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(key, value)
    return prefix


def _open_uploads(s3, prefix):
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/").get("Uploads") or []]


def _journal(tmp_path):
    from vibeboard_runner.upload_journal import JOURNAL_NAME, UploadJournal
    path = tmp_path / "state" / JOURNAL_NAME
    if not path.exists():
        return None  # the pusher never opened a journal
    journal = UploadJournal(str(path))
    try:
        return journal.journal_keys()
    finally:
        journal.close()


def _other_uploader(tmp_path, endpoint, key, mode):
    from vibeboard_runner.upload_journal import JOURNAL_NAME
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, str(tmp_path / "state" / JOURNAL_NAME), endpoint, key,
                             mode], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "uploading", proc.stderr.read() if proc.poll() is not None else ""
    if mode == "kill":
        assert proc.wait(10) == -signal.SIGKILL
    return proc


# --- the three pushers, each run once; rows back as {"url"} or {"upload_error"} per file ---------------------

def _push_cli(tmp_path, capsys):
    from vibeboard_runner import cli
    (tmp_path / "wf.json").write_text(json.dumps({
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cli/out"}}}))
    from PIL import Image
    (tmp_path / "input").mkdir(exist_ok=True)
    Image.new("RGB", (8, 6), (200, 30, 10)).save(tmp_path / "input" / "frame.png")
    capsys.readouterr()
    code = cli.main(["run", str(tmp_path / "wf.json"), "--quiet", "--push", "--output-dir", str(tmp_path / "output"),
                     "--input-dir", str(tmp_path / "input"), "--temp-dir", str(tmp_path / "temp")])
    assert code == 0
    lines = [line[len("pushed: "):] for line in capsys.readouterr().out.splitlines() if line.startswith("pushed: ")]
    return [{"upload_error": line} if line.startswith("FAILED ") else {"url": line} for line in lines]


def _push_remote(tmp_path, remote_server):
    from vibeboard_runner.remote_comfyui import RemoteComfyUI
    from vibeboard_runner.storage import storage_from_config
    result = RemoteComfyUI(remote_server.url).run(workflow(3), str(tmp_path / "output"), storage=storage_from_config())
    assert result.status == "success", result.error
    return result.published


def _farm_worker(tmp_path):
    pytest.importorskip("temporalio")
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.farm.worker import FarmWorker
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.storage import storage_from_config
    import service_nodes
    registry = NodeRegistry.default(embedded=True)
    for name, cls in service_nodes.NODE_CLASS_MAPPINGS.items():
        registry.register(name, cls)
    executor = Executor(registry, output_dir=str(tmp_path / "output"), input_dir=str(tmp_path / "input"),
                        temp_dir=str(tmp_path / "temp"))
    return FarmWorker(None, executor, "w-journal", "testgpu", storage=storage_from_config())


def _push_farm(tmp_path, worker=None):
    from vibeboard_runner.farm.worker import EventLog
    worker = worker or _farm_worker(tmp_path)
    result = worker._execute({"job_id": "farm-job", "prompt": workflow(4)}, EventLog())
    assert result["status"] == "success", result["error"]
    return result["farm"]["files"]


def _push(pusher, tmp_path, capsys, remote_server):
    if pusher == "cli":
        return _push_cli(tmp_path, capsys)
    if pusher == "remote":
        return _push_remote(tmp_path, remote_server)
    return _push_farm(tmp_path)


@pytest.fixture
def remote(request):
    """The loopback ComfyUI stand-in, started only for the remote pusher's tests."""
    return request.getfixturevalue("remote_server") if "remote" in request.node.name else None


@pytest.mark.parametrize("pusher", PUSHERS)
def test_a_normal_push_leaves_the_journal_empty(pusher, tmp_path, env, moto, capsys, remote):
    rows = _push(pusher, tmp_path, capsys, remote)
    assert rows and all(row.get("url") and not row.get("upload_error") for row in rows), rows
    s3 = moto[1]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=env + "/").get("Contents") or []]
    assert len(keys) == len(rows)
    assert _journal(tmp_path) == [] and _open_uploads(s3, env) == []


@pytest.mark.parametrize("pusher", PUSHERS)
def test_a_failed_upload_is_aborted_at_once(pusher, tmp_path, env, moto, capsys, remote, monkeypatch):
    from vibeboard_runner.storage import S3Storage, StorageError
    opened = []

    def dropped_mid_upload(self, path, key, content_type=None):
        """The connection drops after the first part, and the transfer manager's own abort did not get through."""
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                                Body=open(path, "rb").read())
        opened.append(key)
        raise StorageError(f"upload of {os.path.basename(path)} failed: connection reset by peer")

    monkeypatch.setattr(S3Storage, "put_file", dropped_mid_upload)
    rows = _push(pusher, tmp_path, capsys, remote)
    assert opened and rows and all("connection reset" in row.get("upload_error", "") for row in rows), rows
    assert _open_uploads(moto[1], env) == []
    assert _journal(tmp_path) == []


@pytest.mark.parametrize("pusher", PUSHERS)
def test_an_upload_left_by_a_killed_process_is_aborted_at_the_next_start(pusher, tmp_path, env, moto, capsys,
                                                                          remote):
    endpoint, s3 = moto
    stale = f"{env}/killed-job/9/big.mp4"
    _other_uploader(tmp_path, endpoint, stale, "kill")
    assert _open_uploads(s3, env) == [stale] and _journal(tmp_path) == [stale]
    if pusher == "farm":  # the worker aborts at its start, before any job
        worker = _farm_worker(tmp_path)
        assert _open_uploads(s3, env) == [] and _journal(tmp_path) == []
        rows = _push_farm(tmp_path, worker)
    else:
        rows = _push(pusher, tmp_path, capsys, remote)
    assert rows and all(row.get("url") for row in rows), rows
    assert _open_uploads(s3, env) == [] and _journal(tmp_path) == []


def test_a_start_leaves_the_upload_of_a_live_process_alone(tmp_path, env, moto):
    """Two pushers on one state folder (two `vibeboard run --push` at once): the second start must not abort the
    first one's upload; once that process is gone, the next start does."""
    from vibeboard_runner.storage import storage_from_config
    from vibeboard_runner.upload_journal import open_state_journal
    endpoint, s3 = moto
    key = f"{env}/running-job/9/big.mp4"
    proc = _other_uploader(tmp_path, endpoint, key, "wait")
    try:
        storage = storage_from_config()
        with open_state_journal(str(tmp_path / "output"), storage):
            pass
        assert _open_uploads(s3, env) == [key] and _journal(tmp_path) == [key]
    finally:
        proc.kill()
        proc.wait(10)
    with open_state_journal(str(tmp_path / "output"), storage):
        pass
    assert _open_uploads(s3, env) == [] and _journal(tmp_path) == []


def test_which_rows_count_as_left_open(tmp_path, monkeypatch):
    """Rows of an older version (no owner) and of dead processes are left open; a row on another host only once it
    is older than any upload runs; this process's own row only when no upload of that key is running here."""
    import socket
    import time
    from vibeboard_runner import upload_journal as uj
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    host = socket.gethostname()
    me = uj.process_owner()
    parent = uj.process_owner(os.getppid())
    now = time.time()
    rows = {"legacy": (None, now), "dead": (f"{host}|{dead.pid}|", now),
            "reused-pid": (f"{host}|{os.getppid()}|1", now),  # a live pid, started at another time
            "live": (parent, now), "mine-idle": (me, now), "mine-uploading": (me, now),
            "other-host-new": ("elsewhere|12|34", now - 60),
            "other-host-old": ("elsewhere|12|34", now - uj.OTHER_HOST_GRACE_S - 60)}
    monkeypatch.setattr(uj, "_uploading", {"mine-uploading"})
    left = {key for key, (owner, started) in rows.items() if uj._left_open(key, owner, started)}
    assert left == {"legacy", "dead", "reused-pid", "mine-idle", "other-host-old"}


def test_a_job_database_of_an_older_version_gets_the_owner_column(tmp_path):
    """JobStore's journal table (the server's) written before rows named their process: the column is added and
    the old row counts as left open."""
    import sqlite3
    from vibeboard_runner.jobstore import JobStore
    from vibeboard_runner.storage import LocalStorage
    from vibeboard_runner.upload_journal import abort_left_open
    path = str(tmp_path / "jobs.sqlite")
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE upload_journal (key TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
                     "started_at REAL NOT NULL); INSERT INTO upload_journal VALUES ('p/old/9/a.png', 'old', 1.0);")
    db.commit()
    db.close()
    store = JobStore(path)
    try:
        assert store.journal_rows() == [("p/old/9/a.png", None, 1.0)]
        store.journal_add("p/new/9/b.png", "new")
        assert abort_left_open(LocalStorage(str(tmp_path / "store")), store) == 2  # this process uploads nothing
        assert store.journal_keys() == []
    finally:
        store.close()


def test_an_unusable_state_folder_still_pushes(tmp_path, env, moto, capsys, caplog):
    """`vibeboard run --push` with a state folder that cannot hold the journal (here a file in its place): the
    outputs are still pushed (a warning says they go unjournalled), failures still aborted at once."""
    (tmp_path / "state").write_text("not a folder")
    rows = _push_cli(tmp_path, capsys)
    assert rows and all(row.get("url") for row in rows), rows
    assert "cannot open the upload journal" in caplog.text
    assert _open_uploads(moto[1], env) == []
