#!/usr/bin/env python3
"""Install what VibeBoard needs. Safe to run twice; never replaces an existing torch.

  python install.py                 # requirements + the `vibeboard` command (ComfyUI-Manager runs this)
  python install.py --dev           # also test dependencies
  python install.py --comfyui PATH  # also link this pack into PATH/custom_nodes/
Torch: kept if importable; otherwise torch==2.13.0 — the CPU build on a machine without an NVIDIA GPU
(override with VIBEBOARD_TORCH="<pip requirement>" and VIBEBOARD_TORCH_INDEX="<index url>").
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))
TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.check_call(cmd)


def installed_torch_version():
    if importlib.util.find_spec("torch") is None:
        return None
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version")


def local_torch_wheel() -> bool:
    """A torch wheel of the wanted version in pip's find-links (how CPU build machines ship it)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    dirs = [os.environ.get("PIP_FIND_LINKS", "")]
    dirs += [line.split("=", 1)[1].strip("'\"") for line in out.splitlines() if "find-links" in line]
    for folder in " ".join(dirs).split():
        if os.path.isdir(folder) and any(n.startswith(f"torch-{TORCH_VERSION}") for n in os.listdir(folder)):
            return True
    return False


def ensure_torch() -> str:
    version = installed_torch_version()
    if version:
        print(f"torch {version} already installed: keeping it")
        return version
    spec = os.environ.get("VIBEBOARD_TORCH", f"torch=={TORCH_VERSION}")
    index = os.environ.get("VIBEBOARD_TORCH_INDEX")
    if index:
        pip(spec, "--index-url", index)
    elif local_torch_wheel() or has_nvidia_gpu():
        pip(spec)  # local CPU wheel via find-links, or the default CUDA build on a GPU machine
    else:
        try:
            pip(spec, "--index-url", CPU_INDEX)  # CPU build: avoids gigabytes of CUDA packages
        except subprocess.CalledProcessError:
            pip(spec)
    return installed_torch_version() or TORCH_VERSION


def install_requirements(torch_version: str, dev: bool) -> None:
    # A constraint pins the torch we have, so no requirement can pull in another one.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(f"torch=={torch_version}\n")
        constraints = handle.name
    try:
        # the optional extras CI tests too (each requirements-<extra>.txt mirrors pyproject's extra)
        extras = ["requirements-dev.txt", "requirements-sequencer.txt", "requirements-farm.txt",
                  "requirements-foundry.txt"]
        files = ["requirements.txt"] + (extras if dev else [])
        args = []
        for name in files:
            args += ["-r", os.path.join(ROOT, name)]
        pip(*args, "-c", constraints)
        # The `vibeboard` command; --no-deps keeps pip away from torch.
        pip("--no-deps", "-e", ROOT)
    finally:
        os.unlink(constraints)


def link_into_comfyui(comfyui: str) -> None:
    target_dir = os.path.join(os.path.abspath(comfyui), "custom_nodes")
    if not os.path.isdir(target_dir):
        raise SystemExit(f"install.py: {comfyui} does not look like ComfyUI (no custom_nodes/ folder)")
    link = os.path.join(target_dir, "VibeBoard")
    if os.path.islink(link) and os.path.realpath(link) == ROOT:
        print(f"already linked: {link}")
        return
    if os.path.lexists(link):
        raise SystemExit(f"install.py: {link} exists and is not a link to this checkout; remove it first")
    os.symlink(ROOT, link, target_is_directory=True)
    print(f"linked {link} -> {ROOT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="also install test dependencies")
    parser.add_argument("--comfyui", metavar="PATH", help="link the pack into this ComfyUI's custom_nodes/")
    args = parser.parse_args()
    torch_version = ensure_torch()
    install_requirements(torch_version, args.dev)
    if args.comfyui:
        link_into_comfyui(args.comfyui)
    print("VibeBoard installed.")


if __name__ == "__main__":
    main()
