"""Paths read out of files (manifests, shard indexes, location folders) are confined like paths typed into a node.

The attack: a client plants `manifest.json` with `/upload/image?type=output`, then a Story Memory node deletes or
reads whatever file that manifest names. These tests plant such files through a real server on loopback and check
that nothing outside the folder is touched and the error names the node and the input.
"""
import json
import os
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from service_helpers import http, multipart, server_fixture, wait_history

MEMORY_FORMAT = "vibeboard.story_memory"


def _manifest(tensors):
    return {"format": MEMORY_FORMAT, "version": 1, "story_id": "x", "max_size": 8, "keep_first": 3,
            "dedup_threshold": 0.9, "next_shot": 1, "tensors": tensors, "entries": []}


def _plant(base_url, subfolder, name, data: bytes):
    body, ctype = multipart({"type": "output", "subfolder": subfolder, "overwrite": "true"}, {"image": (name, data)})
    status, reply, _ = http("POST", f"{base_url}/upload/image", raw=body, headers={"Content-Type": ctype})
    assert status == 200, reply
    return reply


server = server_fixture("paths", scope="function")


@pytest.fixture
def restricted():
    """The server's path policy for one test (then the local user's again)."""
    from vibeboard.common import runtime
    runtime.set_path_policy(True)
    yield
    runtime.set_path_policy(False)


def _run(server, prompt):
    status, body, _ = http("POST", f"{server.url}/prompt", body={"prompt": prompt})
    assert status == 200, body
    return wait_history(server.url, body["prompt_id"])


def _error_text(entry) -> str:
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return f"{data['node_type']} {data['exception_message']}"
    raise AssertionError(f"no execution_error in {entry['status']}")


def test_story_memory_save_never_deletes_a_file_a_planted_manifest_names(server, tmp_path):
    victim = tmp_path / "victim.safetensors"
    save_file({"x": torch.zeros(2)}, str(victim))
    output = pathlib.Path(server.dirs["output"])
    relative = os.path.relpath(victim, output / "stories" / "b")
    for i, name in enumerate([str(victim), relative]):  # absolute, then `..` back out of the folder
        _plant(server.url, f"stories/b{i}", "manifest.json", json.dumps(_manifest(name)).encode())
        entry = _run(server, {
            "1": {"class_type": "VBStoryMemoryLoad", "inputs": {"memory_dir": f"stories/a{i}", "max_size": 8,
                                                                "keep_first": 3, "create_if_missing": True}},
            "2": {"class_type": "VBStoryMemorySave", "inputs": {"memory": ["1", 0], "memory_dir": f"stories/b{i}"}},
        })
        assert victim.exists(), f"Story Memory Save deleted {victim} named by a planted manifest ({name})"
        assert entry["status"]["status_str"] == "success"  # the bad manifest is replaced; nothing it names is touched
        saved = json.loads((output / "stories" / f"b{i}" / "manifest.json").read_text())
        assert saved["tensors"] is None


def test_story_memory_load_refuses_a_manifest_naming_a_file_outside_its_folder(server, tmp_path):
    victim = tmp_path / "victim.safetensors"
    save_file({"image.0": torch.zeros(4, 4, 3, dtype=torch.uint8)}, str(victim))
    for i, name in enumerate([str(victim), "../../../victim.safetensors", "sub/../../x.safetensors"]):
        manifest = _manifest(name)
        manifest["entries"] = [{"shot": 1, "frame": 0}]
        _plant(server.url, f"stories/m{i}", "manifest.json", json.dumps(manifest).encode())
        entry = _run(server, {
            "1": {"class_type": "VBStoryMemoryLoad", "inputs": {"memory_dir": f"stories/m{i}", "max_size": 8,
                                                                "keep_first": 3, "create_if_missing": False}},
            "2": {"class_type": "VBStoryMemorySave", "inputs": {"memory": ["1", 0], "memory_dir": f"stories/c{i}"}},
        })
        assert entry["status"]["status_str"] == "error"
        text = _error_text(entry)
        assert "Story Memory Load" in text and "memory_dir" in text
        assert not (pathlib.Path(server.dirs["output"]) / "stories" / f"c{i}").exists()  # the victim was never re-served


def test_story_memory_load_refuses_a_damaged_manifest_with_a_node_error(server, tmp_path):
    for i, data in enumerate([b"\xff\xfe not utf-8", b"{not json", b"[1, 2]",
                              json.dumps({"format": MEMORY_FORMAT}).encode()]):
        _plant(server.url, f"stories/d{i}", "manifest.json", data)
        entry = _run(server, {
            "1": {"class_type": "VBStoryMemoryLoad", "inputs": {"memory_dir": f"stories/d{i}", "max_size": 8,
                                                                "keep_first": 3, "create_if_missing": False}},
            "2": {"class_type": "VBStoryMemorySave", "inputs": {"memory": ["1", 0], "memory_dir": "stories/e"}},
        })
        text = _error_text(entry)
        assert "Story Memory Load" in text and "memory_dir" in text, text


def test_bank_files_that_are_links_out_of_the_folder_are_refused(tmp_path):
    from vibeboard.shots.memory_bank import MemoryFileError, StoryMemoryBank
    outside = tmp_path / "outside"
    outside.mkdir()
    save_file({"image.0": torch.zeros(4, 4, 3, dtype=torch.uint8)}, str(outside / "secret.safetensors"))
    bank = tmp_path / "bank"
    bank.mkdir()
    os.symlink(outside / "secret.safetensors", bank / "memory-link.safetensors")
    (bank / "manifest.json").write_text(json.dumps({**_manifest("memory-link.safetensors"),
                                                    "entries": [{"shot": 1, "frame": 0}]}))
    with pytest.raises(MemoryFileError, match="outside"):
        StoryMemoryBank.load(str(bank))
    # manifest.json itself a link to a manifest elsewhere
    (outside / "manifest.json").write_text(json.dumps(_manifest(None)))
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(outside / "manifest.json", linked / "manifest.json")
    with pytest.raises(MemoryFileError, match="outside"):
        StoryMemoryBank.load(str(linked))
    # saving over it replaces the link, never the file it points to
    StoryMemoryBank(path=str(linked)).save(str(linked))
    assert json.loads((outside / "manifest.json").read_text())["tensors"] is None
    assert not os.path.islink(linked / "manifest.json")


def test_memory_folder_through_a_symlinked_output_subfolder_is_refused(tmp_path):
    from vibeboard.common import runtime
    from vibeboard.shots.nodes_story import VBStoryMemorySave
    from vibeboard.shots.memory_bank import StoryMemoryBank
    output, outside = tmp_path / "output", tmp_path / "elsewhere"
    output.mkdir()
    outside.mkdir()
    os.symlink(outside, output / "stories")
    runtime.set_host_dirs(output=str(output), input=str(tmp_path / "input"), temp=str(tmp_path / "temp"),
                          models=str(tmp_path / "models"))
    with pytest.raises(runtime.NodeInputError, match="Story Memory Save.*memory_dir"):
        VBStoryMemorySave().save(StoryMemoryBank(), memory_dir="stories/film/memory")
    assert list(outside.iterdir()) == []


def test_location_memory_files_that_are_links_out_of_the_folder_are_refused(tmp_path):
    from vibeboard.shots import spatia
    outside = tmp_path / "outside.ply"
    outside.write_text("not yours")
    folder = tmp_path / "set"
    folder.mkdir()
    os.symlink(outside, folder / "point_cloud.ply")
    with pytest.raises(ValueError, match="outside"):
        spatia.LocationMemory.load(str(folder))
    with pytest.raises(ValueError, match="outside"):
        spatia.LocationMemory(path=str(folder)).save(str(folder))
    assert outside.read_text() == "not yours"


def test_shard_index_naming_a_file_outside_the_model_folder_is_refused(tmp_path, request):
    from vibeboard.common import runtime
    from vibeboard.models import loaders
    secret = tmp_path / "secret.safetensors"
    save_file({"w": torch.ones(1)}, str(secret))
    folder = tmp_path / "models" / "transformer"
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(folder / "model-00001.safetensors"))
    for name in (str(secret), "../../secret.safetensors"):
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": name}}))
        with pytest.raises(loaders.ModelFileError, match="shard"):
            loaders.read_diffusers_folder(str(folder))
    # restricted (server) policy: a shard that is a link out of the server's folders is refused too
    runtime.set_host_dirs(output=str(tmp_path / "o"), input=str(tmp_path / "i"), temp=str(tmp_path / "t"),
                          models=str(tmp_path / "models"))
    request.getfixturevalue("restricted")
    os.symlink(secret, folder / "model-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00002.safetensors"}}))
    with pytest.raises(loaders.ModelFileError, match="outside"):
        loaders.read_diffusers_folder(str(folder))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001.safetensors"}}))
    assert loaders.read_diffusers_folder(str(folder))["w"].item() == 0.0


def test_model_names_cannot_climb_out_of_the_models_folder(tmp_path):
    from vibeboard.common import runtime
    from vibeboard.models import registry
    runtime.set_host_dirs(models=str(tmp_path / "models"))
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    assert registry.find_file("../../secret.safetensors", "loras") is None


def test_dailies_database_media_outside_the_server_folders_is_never_read_or_copied(tmp_path, request):
    """A Dailies project is an SQLite file in output/ (uploadable): a planted version path must not be copied
    into a review export (then served by /view) or cut into an assembly."""
    pytest.importorskip("opentimelineio")
    from vibeboard.common import runtime
    from vibeboard.dailies.review_server import export_static
    from vibeboard.dailies.store import DailiesError, DailiesStore
    runtime.set_host_dirs(output=str(tmp_path / "output"), input=str(tmp_path / "input"),
                          temp=str(tmp_path / "temp"), models=str(tmp_path / "models"))
    secret = tmp_path / "private" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"not for clients")
    folder = tmp_path / "output" / "vibeboard" / "dailies"
    folder.mkdir(parents=True)
    store = DailiesStore(str(folder / "planted.sqlite"))
    version = store.add_version("sh010", str(secret))  # what a planted database holds
    store.set_status(version["id"], "approved")
    request.getfixturevalue("restricted")
    with pytest.raises(DailiesError, match="outside the folders"):
        store.latest_approved("sh010")
    export = tmp_path / "output" / "review"
    export_static(store, str(export))
    assert not any(p.read_bytes() == b"not for clients" for p in export.rglob("*") if p.is_file())


def test_sequencer_output_folder_does_not_follow_a_symlinked_subfolder(tmp_path):
    from vibeboard.common import runtime
    from vibeboard.sequencer import node_io
    out, outside = tmp_path / "output", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "deliveries")
    runtime.set_host_dirs(output=str(out))
    with pytest.raises(runtime.NodeInputError, match="Deliver.*filename_prefix.*symbolic link"):
        node_io.output_folder("Deliver", "deliveries/film")
    assert list(outside.iterdir()) == []
