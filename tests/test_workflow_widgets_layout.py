"""widgets_values layout as the real ComfyUI frontend (1.27.10, checked in headless Chromium) writes it.

The frontend builds widgets in input_order (required, then optional) and appends the upload button that
its UploadImage/UploadAudio extensions add LAST, because "upload" is not in input_order. The expected
lists below are what `node.serialize().widgets_values` returned there for fresh nodes.
"""
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.ui_export import api_to_ui
from vibeboard_runner.workflow import load_workflow, widget_slots


class MaskLoader:
    """Shaped like ComfyUI's LoadImageMask: an upload combo followed by another combo."""
    RETURN_TYPES = ("MASK",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (["a.png", "b.png"], {"image_upload": True}),
                             "channel": (["alpha", "red"],)}}


class OptionalUpload:
    """The frontend only adds the button for a *required* upload combo."""
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"strength": ("FLOAT", {"default": 1.0})},
                "optional": {"image": (["a.png"], {"image_upload": True})}}


class AudioLoader:
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": (["a.wav", "b.wav"], {"audio_upload": True}),
                             "gain": ("FLOAT", {"default": 1.0})}}


def registry():
    reg = NodeRegistry.default()
    for cls in (MaskLoader, OptionalUpload, AudioLoader):
        reg.register(cls.__name__, cls)
    return reg


def ui_node(node_type, values):
    return {"nodes": [{"id": 1, "type": node_type, "mode": 0, "inputs": [], "outputs": [],
                       "widgets_values": values}], "links": []}


LOAD_VIDEO_INPUTS = {"video": "clip.mp4", "frame_load_cap": 3, "skip_first_frames": 2, "select_every_nth": 1,
                     "force_rate": 0.5, "custom_width": 24, "custom_height": 0, "start_time": 0.25,
                     "video_path": "sub/x.mp4"}
ORDER = ["video", "frame_load_cap", "skip_first_frames", "select_every_nth", "force_rate", "custom_width",
         "custom_height", "start_time", "video_path"]


def test_upload_slot_is_last_like_the_frontend():
    reg = registry()
    slots = widget_slots(reg.get("VBLoadVideo").INPUT_TYPES())
    assert slots[-1] == ("video", "upload")
    assert [name for name, kind in slots if kind == "value"] == ORDER
    assert widget_slots(MaskLoader.INPUT_TYPES()) == [("image", "value"), ("channel", "value"), ("image", "upload")]
    assert widget_slots(OptionalUpload.INPUT_TYPES()) == [("strength", "value"), ("image", "value")]
    assert widget_slots(AudioLoader.INPUT_TYPES())[-1] == ("audio", "upload")


def test_frontend_layout_parses():
    values = [LOAD_VIDEO_INPUTS[name] for name in ORDER] + ["image"]
    prompt = load_workflow(ui_node("VBLoadVideo", values), registry())
    assert prompt["1"]["inputs"] == LOAD_VIDEO_INPUTS
    mask = load_workflow(ui_node("MaskLoader", ["b.png", "red", "image"]), registry())
    assert mask["1"]["inputs"] == {"image": "b.png", "channel": "red"}
    audio = load_workflow(ui_node("AudioLoader", ["b.wav", 0.5, ""]), registry())
    assert audio["1"]["inputs"] == {"audio": "b.wav", "gain": 0.5}


def test_older_layouts_still_parse():
    plain = [LOAD_VIDEO_INPUTS[name] for name in ORDER]
    after_required = plain[:8] + ["image"] + plain[8:]   # frontends before input_order
    after_combo = plain[:1] + ["image"] + plain[1:]      # what this runner wrote before the fix
    for values in (after_required, after_combo, plain):
        prompt = load_workflow(ui_node("VBLoadVideo", values), registry())
        assert prompt["1"]["inputs"] == LOAD_VIDEO_INPUTS, values


def test_export_writes_the_frontend_layout_and_round_trips():
    reg = registry()
    api = {"1": {"class_type": "VBLoadVideo", "inputs": dict(LOAD_VIDEO_INPUTS)},
           "2": {"class_type": "MaskLoader", "inputs": {"image": "a.png", "channel": "red"}}}
    ui = api_to_ui(api, reg)
    by_type = {n["type"]: n for n in ui["nodes"]}
    assert by_type["VBLoadVideo"]["widgets_values"] == [LOAD_VIDEO_INPUTS[n] for n in ORDER] + ["image"]
    assert by_type["MaskLoader"]["widgets_values"] == ["a.png", "red", "image"]
    back = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in api.items()}


def test_return_type_mismatch_reports_the_declared_spec_like_comfyui():
    """ComfyUI 0.3.64 answered this prompt with input_config == the declared ["AUDIO", {tooltip}]."""
    from vibeboard_runner.validation import validate_prompt

    reg = registry()
    prompt = {"0": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
              "2": {"class_type": "VBSaveAudio", "inputs": {"audio": ["0", 0], "filename_prefix": "a", "format": "wav"}}}
    result = validate_prompt(prompt, reg)
    error = result.node_errors["2"]["errors"][0]
    assert error["type"] == "return_type_mismatch"
    declared = reg.get("VBSaveAudio").INPUT_TYPES()["required"]["audio"]
    assert error["extra_info"]["input_config"] == [declared[0], declared[1]]
    assert error["details"] == "audio, received_type(IMAGE) mismatch input_type(AUDIO)"
