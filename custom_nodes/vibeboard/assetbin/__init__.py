"""Asset Bin: scenes deconstructed into 3D assets with PBR materials, an asset table with licences."""
