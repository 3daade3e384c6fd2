"""comfy-catapult driving `vibeboard serve`, run by tests/test_service_client_comfy_catapult.py in comfy-catapult's
own interpreter (a separate venv: its pins clash with fal-client/elevenlabs, so it is never installed next to the
pack). Imports only comfy-catapult and the standard library; prints one JSON object of what it saw.

    python catapult_client.py SERVER_URL JOB_DIR

JOB_DIR holds optics.json (API prompt: saves a PNG and an MP4), upload.png and failing.json (a prompt that fails
while running).
"""
import asyncio
import json
import sys
import uuid

from anyio import Path
from comfy_catapult.api_client import ComfyAPIClient
from comfy_catapult.catapult import ComfyCatapult
from comfy_catapult.comfy_schema import ComfyUIPathTriplet
from comfy_catapult.errors import JobFailed, WorkflowSubmissionError
from comfy_catapult.remote_file_api_comfy import ComfySchemeRemoteFileAPI, TripletToComfySchemeURL


def _outputs(history: dict) -> dict:
    return history.get("outputs") or {}


async def main(url: str, job_dir: str) -> dict:
    job = Path(job_dir)
    seen: dict = {}
    files = ComfySchemeRemoteFileAPI(comfy_api_urls=[url], overwrite=True)
    async with ComfyAPIClient(comfy_api_url=url) as client:
        seen["version"] = (await client.GetSystemStats()).system.comfyui_version
        async with ComfyCatapult(comfy_client=client, debug_path=None) as catapult:
            # queue, wait, download the PNG and the MP4
            optics = json.loads(await (job / "optics.json").read_text())
            saves = [i for i, n in optics.items() if n["class_type"] in ("SaveImage", "VBSaveVideo")]
            history = await catapult.Catapult(job_id=f"optics-{uuid.uuid4().hex[:8]}", prepared_workflow=optics,
                                              important=saves)
            seen["downloads"] = {}
            for node_id in saves:
                for item in _outputs(history)[node_id]["images"]:
                    triplet = ComfyUIPathTriplet(type=item["type"], subfolder=item["subfolder"],
                                                 filename=item["filename"])
                    target = job / "downloads" / item["filename"]
                    await files.DownloadFile(untrusted_src_url=TripletToComfySchemeURL(comfy_api_url=url,
                                                                                         triplet=triplet),
                                             dst_path=target)
                    seen["downloads"][item["filename"]] = str(target)

            # upload an image, then a workflow that loads it and saves it again
            uploaded = await files.UploadFile(src_path=job / "upload.png",
                                              untrusted_dst_url=f"comfy+{url}/input/plates/upload.png")
            seen["uploaded"] = uploaded
            name = uploaded.split("/input/", 1)[1]
            roundtrip = {"1": {"class_type": "LoadImage", "inputs": {"image": name}, "_meta": {"title": "Load"}},
                         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "catapult"},
                               "_meta": {"title": "Save"}}}
            history = await catapult.Catapult(job_id=f"upload-{uuid.uuid4().hex[:8]}", prepared_workflow=roundtrip,
                                              important=["2"])
            item = _outputs(history)["2"]["images"][0]
            back = job / "downloads" / ("roundtrip-" + item["filename"])
            await files.DownloadTriplet(untrusted_comfy_api_url=url, dst_path=back,
                                        untrusted_src_triplet=ComfyUIPathTriplet(
                                            type=item["type"], subfolder=item["subfolder"], filename=item["filename"]))
            seen["roundtrip"] = str(back)

            # error paths: a job that fails while running, and a prompt the server refuses
            failing = json.loads(await (job / "failing.json").read_text())
            try:
                await catapult.Catapult(job_id=f"fail-{uuid.uuid4().hex[:8]}", prepared_workflow=failing,
                                        important=list(failing))
                seen["failing"] = "no exception"
            except JobFailed as exc:
                seen["failing"] = "JobFailed: " + str(exc)[:300]
            try:
                await catapult.Catapult(job_id=f"bad-{uuid.uuid4().hex[:8]}",
                                        prepared_workflow={"1": {"class_type": "NoSuchNode", "inputs": {}}},
                                        important=["1"])
                seen["refused"] = "no exception"
            except WorkflowSubmissionError as exc:
                seen["refused"] = "WorkflowSubmissionError: " + str(exc)[:300]
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1].rstrip("/"), sys.argv[2]))))
