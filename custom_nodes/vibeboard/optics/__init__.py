"""Optics Engine: defocus maps, occlusion-aware bokeh, rack focus and depth estimation (training-free
part of GenFocus / Learn2Refocus). Mechanism modules are plain torch; `nodes.py` holds the node classes."""
