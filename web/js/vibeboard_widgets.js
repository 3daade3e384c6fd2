// VibeBoard canvas widgets for the ComfyUI frontend.
//  - Camera Path — Draw (VBCameraPathDraw): draw a line over the frame; stored in the "points" STRING widget
//    as {"points": [[x, y], ...]} normalised to 0..1 (y down) — vibeboard/camera/widget_values.py reads it.
//  - Boxes — Draw (VBBoxesDraw): drag to draw a box, drag inside a box to move it, drag its bottom-right
//    corner to resize, double-click to delete; stored in the "boxes" STRING widget as
//    {"boxes": [{"x0", "y0", "x1", "y1", "label"}]}.
// The values live in ordinary STRING widgets, so they are saved in widgets_values and run headless.
// The drawing surface is always 16:9 (the frame it is drawn over), in the default LiteGraph renderer and in
// Vue nodes: the DOM widget asks for a height of 9/16 of the node's width (so the node grows taller as it is
// made wider, and never shrinks below a 256×144 canvas), and the canvas is letterboxed inside whatever box the
// renderer gives it, so it is never stretched.
import { app } from "../../scripts/app.js";

const EDITORS = {
  VBCameraPathDraw: { field: "points", mode: "path" },
  VBBoxesDraw: { field: "boxes", mode: "boxes" },
};
const MIN_STEP = 0.01;   // normalised distance between recorded path points
const HANDLE = 0.03;     // normalised size of a box's resize handle
const ASPECT = 16 / 9;
const MIN_CANVAS_WIDTH = 256;  // CSS px: the smallest surface still usable for drawing
const DOM_MARGIN = 10;         // the frontend's default DOM widget margin, each side (LiteGraph renderer)
const NODE_MIN_WIDTH = MIN_CANVAS_WIDTH + 44;  // room for the margins, or a Vue node's padding and border
const r4 = (v) => Math.round(v * 10000) / 10000;
const clamp01 = (v) => Math.min(1, Math.max(0, v));

export function parsePoints(text) {
  try {
    const data = JSON.parse(text || "{}");
    const pts = Array.isArray(data) ? data : data.points || [];
    return pts.map((p) => (Array.isArray(p) ? [Number(p[0]), Number(p[1])] : [Number(p.x), Number(p.y)]));
  } catch (e) {
    return [];
  }
}

export function serializePoints(points) {
  return JSON.stringify({ points: points.map(([x, y]) => [r4(x), r4(y)]) });
}

export function parseBoxes(text) {
  try {
    const data = JSON.parse(text || "{}");
    const boxes = Array.isArray(data) ? data : data.boxes || [];
    return boxes.map((b) => (Array.isArray(b) ? { x0: b[0], y0: b[1], x1: b[2], y1: b[3], label: "" } : { ...b }));
  } catch (e) {
    return [];
  }
}

export function serializeBoxes(boxes) {
  return JSON.stringify({
    boxes: boxes.map((b) => {
      const out = {
        x0: r4(Math.min(b.x0, b.x1)), y0: r4(Math.min(b.y0, b.y1)),
        x1: r4(Math.max(b.x0, b.x1)), y1: r4(Math.max(b.y0, b.y1)), label: b.label || "",
      };
      if (b.frame_start != null) out.frame_start = b.frame_start;
      if (b.frame_end != null) out.frame_end = b.frame_end;
      return out;
    }),
  });
}

function upstreamImage(node) {
  if (node.imgs && node.imgs.length) return node.imgs[0];
  const input = (node.inputs || []).find((i) => i.name === "image" || i.name === "source_video");
  const graph = node.graph || app.graph;
  if (!input || input.link == null || !graph) return null;
  const link = graph.links?.[input.link] ?? graph.links?.get?.(input.link);
  const src = link && graph.getNodeById?.(link.origin_id);
  return src && src.imgs && src.imgs.length ? src.imgs[0] : null;
}

class CanvasEditor {
  constructor(node, widget, mode) {
    this.node = node;
    this.widget = widget;
    this.mode = mode;
    // The DOM widget's element is this wrapper; the renderer sizes it, the canvas keeps 16:9 inside it.
    this.element = document.createElement("div");
    this.element.className = "vibeboard-canvas-frame";
    this.element.style.cssText = "width:100%;height:100%;min-height:0;aspect-ratio:16/9;display:flex;" +
      "align-items:center;justify-content:center;overflow:hidden;touch-action:none;";
    this.canvas = document.createElement("canvas");
    this.canvas.width = 320;
    this.canvas.height = 180;
    this.canvas.className = "vibeboard-canvas-editor";
    this.canvas.style.cssText = "display:block;width:100%;aspect-ratio:16/9;background:#222;cursor:crosshair;" +
      "box-shadow:0 0 0 1px #555;";  // the frame edge, outside the box so it takes no space
    this.element.appendChild(this.canvas);
    this.drag = null;
    // Listen on the wrapper so a stroke may start in the letterbox bars (clamped to the frame's edge).
    this.element.addEventListener("pointerdown", (e) => this.down(e));
    this.element.addEventListener("pointermove", (e) => this.move(e));
    this.element.addEventListener("pointerup", (e) => this.up(e));
    this.element.addEventListener("dblclick", (e) => this.dbl(e));
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => this.fit());
      this.observer.observe(this.element);
    }
    const original = widget.callback;
    widget.callback = (...args) => { this.draw(); return original?.apply(widget, args); };
    this.draw();
  }

  // The widget height the node should give the surface: 9/16 of the node's inner width (at least the minimum),
  // plus the margins the renderer takes off above and below the element.
  wantedHeight() {
    const width = Math.max(MIN_CANVAS_WIDTH, (this.node.size?.[0] ?? 0) - 2 * DOM_MARGIN);
    return Math.ceil(width / ASPECT) + 2 * DOM_MARGIN;
  }

  // Largest 16:9 rectangle inside the wrapper (letterbox), with a backing store at device resolution.
  fit() {
    const w = this.element.clientWidth, h = this.element.clientHeight;
    if (!w) return;
    const width = h ? Math.min(w, h * ASPECT) : w;
    const height = width / ASPECT;
    this.canvas.style.width = `${Math.floor(width)}px`;
    this.canvas.style.height = `${Math.floor(height)}px`;
    const scale = window.devicePixelRatio || 1;
    const backing = Math.max(16, Math.round(width * scale));
    if (this.canvas.width !== backing) {
      this.canvas.width = backing;
      this.canvas.height = Math.round(backing / ASPECT);
    }
    this.draw();
  }

  pos(e) {
    const r = this.canvas.getBoundingClientRect();  // the frame itself, not the letterbox around it
    return [clamp01((e.clientX - r.left) / Math.max(r.width, 1)), clamp01((e.clientY - r.top) / Math.max(r.height, 1))];
  }

  commit(value) {
    this.widget.value = value;
    this.widget.callback?.(value);
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  down(e) {
    try { this.element.setPointerCapture?.(e.pointerId); } catch (err) { /* synthetic or finished pointer */ }
    const [x, y] = this.pos(e);
    if (this.mode === "path") {
      const keep = e.shiftKey ? parsePoints(this.widget.value) : [];
      this.drag = { points: keep.concat([[x, y]]) };
    } else {
      const boxes = parseBoxes(this.widget.value);
      const i = boxes.findIndex((b) => x >= Math.min(b.x0, b.x1) && x <= Math.max(b.x0, b.x1) &&
                                       y >= Math.min(b.y0, b.y1) && y <= Math.max(b.y0, b.y1));
      if (i >= 0) {
        const b = boxes[i];
        const corner = Math.abs(x - Math.max(b.x0, b.x1)) < HANDLE && Math.abs(y - Math.max(b.y0, b.y1)) < HANDLE;
        this.drag = { boxes, index: i, kind: corner ? "resize" : "move", start: [x, y], orig: { ...b } };
      } else {
        boxes.push({ x0: x, y0: y, x1: x, y1: y, label: "" });
        this.drag = { boxes, index: boxes.length - 1, kind: "new" };
      }
    }
  }

  move(e) {
    if (!this.drag) return;
    const [x, y] = this.pos(e);
    if (this.mode === "path") {
      const pts = this.drag.points;
      const [lx, ly] = pts[pts.length - 1];
      if (Math.hypot(x - lx, y - ly) >= MIN_STEP) pts.push([x, y]);
    } else {
      const b = this.drag.boxes[this.drag.index];
      if (this.drag.kind === "new" || this.drag.kind === "resize") {
        b.x1 = x; b.y1 = y;
      } else {
        const o = this.drag.orig;
        const dx = Math.min(Math.max(x - this.drag.start[0], -Math.min(o.x0, o.x1)), 1 - Math.max(o.x0, o.x1));
        const dy = Math.min(Math.max(y - this.drag.start[1], -Math.min(o.y0, o.y1)), 1 - Math.max(o.y0, o.y1));
        Object.assign(b, { x0: o.x0 + dx, x1: o.x1 + dx, y0: o.y0 + dy, y1: o.y1 + dy });
      }
    }
    this.draw();
  }

  up(e) {
    if (!this.drag) return;
    this.move(e);
    if (this.mode === "path") {
      this.commit(serializePoints(this.drag.points));
    } else {
      const boxes = this.drag.boxes.filter((b) => Math.abs(b.x1 - b.x0) > 0.005 && Math.abs(b.y1 - b.y0) > 0.005);
      this.commit(serializeBoxes(boxes));
    }
    this.drag = null;
  }

  dbl(e) {
    if (this.mode !== "boxes") {
      this.commit(serializePoints([]));
      return;
    }
    const [x, y] = this.pos(e);
    const boxes = parseBoxes(this.widget.value).filter((b) => !(x >= Math.min(b.x0, b.x1) && x <= Math.max(b.x0, b.x1) &&
                                                                y >= Math.min(b.y0, b.y1) && y <= Math.max(b.y0, b.y1)));
    this.commit(serializeBoxes(boxes));
  }

  draw() {
    const c = this.canvas;
    const ctx = c.getContext?.("2d");
    if (!ctx) return;
    const w = c.width, h = c.height;
    ctx.clearRect(0, 0, w, h);
    const img = upstreamImage(this.node);
    if (img && img.complete !== false) {
      try { ctx.drawImage(img, 0, 0, w, h); } catch (e) { /* image not decodable yet */ }
    }
    ctx.lineWidth = 2;
    if (this.mode === "path") {
      const pts = this.drag ? this.drag.points : parsePoints(this.widget.value);
      ctx.strokeStyle = "#ffcc00";
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      ctx.stroke();
      if (pts.length) {
        ctx.fillStyle = "#00e676";
        ctx.fillRect(pts[0][0] * w - 4, pts[0][1] * h - 4, 8, 8);  // start = frame 0's centre
        ctx.fillStyle = "#ff5252";
        const [lx, ly] = pts[pts.length - 1];
        ctx.beginPath(); ctx.arc(lx * w, ly * h, 5, 0, 2 * Math.PI); ctx.fill();
      }
    } else {
      const boxes = this.drag ? this.drag.boxes : parseBoxes(this.widget.value);
      boxes.forEach((b, i) => {
        const x = Math.min(b.x0, b.x1) * w, y = Math.min(b.y0, b.y1) * h;
        const bw = Math.abs(b.x1 - b.x0) * w, bh = Math.abs(b.y1 - b.y0) * h;
        ctx.strokeStyle = `hsl(${(i * 67) % 360},90%,60%)`;
        ctx.strokeRect(x, y, bw, bh);
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillRect(x + bw - 5, y + bh - 5, 10, 10);
        ctx.fillText(b.label || String(i + 1), x + 3, y + 12);
      });
    }
  }
}

export function attachEditor(node, field, mode) {
  const widget = (node.widgets || []).find((w) => w.name === field);
  if (!widget || node.__vibeboardEditor) return null;
  const editor = new CanvasEditor(node, widget, mode);
  node.__vibeboardEditor = editor;
  if (node.addDOMWidget) {
    const dom = node.addDOMWidget(`${field}_editor`, "vibeboard_canvas", editor.element, {
      serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {},
      // min = max: the renderer gives the surface exactly 16:9 of the node's width (LiteGraph layout)
      getMinHeight: () => editor.wantedHeight(), getMaxHeight: () => editor.wantedHeight(),
    });
    if (dom) dom.serialize = false;  // never add a slot to widgets_values
  }
  // Wider node → taller node: LiteGraph clamps user resizes to computeSize(), which includes the height above;
  // programmatic setSize() calls (and older frontends) are held to it here, and to the minimum width.
  const onResize = node.onResize;
  node.onResize = function (...args) {
    const result = onResize?.apply(this, args);
    this.size[0] = Math.max(this.size[0], NODE_MIN_WIDTH);  // the minimum surface
    const min = this.computeSize?.();
    if (min && this.size[1] < min[1]) this.size[1] = min[1];
    editor.fit();
    return result;
  };
  if (node.computeSize && node.size) {  // a new node starts with the surface at its minimum, 16:9
    node.size[0] = Math.max(node.size[0], NODE_MIN_WIDTH);
    node.size[1] = Math.max(node.size[1], node.computeSize()[1]);
  }
  const refresh = () => editor.draw();
  const onConn = node.onConnectionsChange;
  node.onConnectionsChange = function (...args) { refresh(); return onConn?.apply(this, args); };
  const onExec = node.onExecuted;
  node.onExecuted = function (...args) { refresh(); return onExec?.apply(this, args); };
  return editor;
}

app.registerExtension({
  name: "vibeboard.canvas_widgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const spec = EDITORS[nodeData.name];
    if (!spec) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = created?.apply(this, args);
      attachEditor(this, spec.field, spec.mode);
      return result;
    };
  },
});
