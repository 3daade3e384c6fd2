// First start of the editor on `vibeboard serve` (no ComfyUI installed): the stock default graph uses
// ComfyUI's checkpoint nodes, which this server does not run, so older frontends open a blocking
// "Some Nodes Are Missing" dialog. Here the default graph becomes the pack's Optics Engine workflow, which
// runs without weights. In real ComfyUI (system_stats says another version) nothing changes.
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "vibeboard.first_graph",
  async init() {
    const holder = window.comfyAPI && window.comfyAPI.defaultGraph;
    const stock = holder && holder.defaultGraph;
    if (!stock) return;
    try {
      const stats = await (await app.api.fetchApi("/system_stats")).json();
      if (!String(stats.system && stats.system.comfyui_version).startsWith("vibeboard-")) return;
      const res = await app.api.fetchApi("/workflow_templates/vibeboard/optics_engine.json");
      if (!res.ok) return;
      const ours = await res.json();
      // in place: the frontend keeps its own reference to this object and clones it for each new default
      for (const key of Object.keys(stock)) delete stock[key];
      Object.assign(stock, ours);
      if (holder.defaultGraphJSON !== undefined) holder.defaultGraphJSON = JSON.stringify(ours);
    } catch (err) {
      console.warn("VibeBoard: keeping the stock default graph:", err);
    }
  },
});
