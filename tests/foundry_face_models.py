"""Tiny ONNX stand-ins for FlashPortrait's face models (onnx.helper), with the release's input/output layout and
planted outputs, so the decoding code is checked against known answers.

face_det.onnx (NanoDet, 160×272 input): outputs `cls_pred_stride_{8,16,32}` [1, N_s, 1] (sigmoid scores) then
`dis_pred_stride_{8,16,32}` [1, N_s, 32] (4 sides × 8 bins) with N_s = ceil(272/s)·(160/s): 680, 170, 45.
face_landmark.onnx (128² crop): `landmark` [1, 444] (222 x's then 222 y's, fractions of the crop), `euler`
[1, 3], `prob` [1, 1].
"""
import numpy as np

STRIDES = (8, 16, 32)
IN_H, IN_W = 272, 160


def anchors(stride):
    return int(np.ceil(IN_H / stride)), IN_W // stride


def planted_outputs(detections):
    """detections: [(stride, row, col, score, (l, t, r, b) in stride units, integers 0..7)] → (scores, dists)."""
    scores, dists = [], []
    for s in STRIDES:
        rows, cols = anchors(s)
        sc = np.full((1, rows * cols, 1), 0.01, np.float32)
        di = np.zeros((1, rows * cols, 32), np.float32)
        for stride, r, c, score, sides in detections:
            if stride != s:
                continue
            i = r * cols + c
            sc[0, i, 0] = score
            for side, d in enumerate(sides):
                di[0, i, side * 8 + int(d)] = 30.0   # one bin dominates: the expectation is d
        scores.append(sc)
        dists.append(di)
    return scores, dists


def _constant_model(path, input_name, input_shape, outputs, batched=False):
    """A graph whose outputs are the planted constants (+ 0·mean(input), so the input is really read); batched:
    one row of each output per input image ([N, K] outputs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    if batched:  # [N,3,H,W] → mean over pixels [N,3] → × zeros [3,1] → [N,1], broadcast against [1,K]
        nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], axes=[2, 3], keepdims=0),
                 helper.make_node("MatMul", ["mean", "zero"], ["nothing"])]
        inits = [numpy_helper.from_array(np.zeros((3, 1), np.float32), "zero")]
    else:
        nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
                 helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
        inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    for name, value in outputs:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name + "_value"))
        nodes.append(helper.make_node("Add", [name + "_value", "nothing"], [name]))
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                                input_shape)],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT,
                                                             ["N", *v.shape[1:]] if batched else list(v.shape))
                               for n, v in outputs],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def write_face_det(path, detections=((8, 17, 10, 0.9, (3, 4, 3, 4)),)):
    scores, dists = planted_outputs(list(detections))
    outs = [(f"cls_pred_stride_{s}", v) for s, v in zip(STRIDES, scores)] + \
           [(f"dis_pred_stride_{s}", v) for s, v in zip(STRIDES, dists)]
    return _constant_model(path, "data", [1, 3, IN_H, IN_W], outs)


def face_points(seed=0):
    """222 points (fractions of the 128² crop) on a face-like ellipse, eyes level (points 74 and 96)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 222, endpoint=False)
    pts = np.stack([0.5 + 0.3 * np.cos(t), 0.5 + 0.35 * np.sin(t)], 1) + rng.normal(0, 0.01, (222, 2))
    pts[74], pts[96] = (0.35, 0.4), (0.65, 0.4)
    for i, p in zip((182, 202, 36, 149, 133), ((0.38, 0.4), (0.62, 0.4), (0.5, 0.55), (0.41, 0.68), (0.59, 0.68))):
        pts[i] = p
    return pts


def write_face_landmark(path, points=None, euler=(0.05, -0.1, 0.0), prob=0.98):
    pts = face_points() if points is None else np.asarray(points)
    return _constant_model(path, "input", ["N", 3, 128, 128],
                           [("landmark", np.concatenate([pts[:, 0], pts[:, 1]])[None]),
                            ("euler", np.array([euler], np.float32)), ("prob", np.array([[prob]], np.float32))],
                           batched=True)
