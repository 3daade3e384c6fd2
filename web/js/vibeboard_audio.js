// Audio player on VibeBoard's audio savers in the ComfyUI frontend.
// The frontend gives only its own audio nodes (SaveAudio, PreviewAudio, …) the "audioUI" player: a DOM
// widget it builds for an input of type AUDIO_UI, which also shows the saved file after a run. Its
// onNodeOutputsUpdated hook assumes that every node with an "audio" output has that widget, and throws on
// ours otherwise (seen with frontend 1.27.10 when a workflow tab is restored). So we ask for the same
// widget. It is not serialized and is not in the node's input_order, so widgets_values and the API prompt
// do not change.
import { app } from "../../scripts/app.js";

export const AUDIO_SAVERS = ["VBSaveAudio"];

export function addAudioPlayer(nodeData) {
  if (!nodeData || !AUDIO_SAVERS.includes(nodeData.name)) return false;
  nodeData.input = nodeData.input || {};
  nodeData.input.required = nodeData.input.required || {};
  if (nodeData.input.required.audioUI) return false;
  nodeData.input.required.audioUI = ["AUDIO_UI", {}];
  return true;
}

app.registerExtension({
  name: "vibeboard.audio_player",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    addAudioPlayer(nodeData);
  },
});
