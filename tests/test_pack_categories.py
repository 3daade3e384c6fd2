"""The node library shows one folder per studio module: every node of a module folder shares one category, and the
Optics Engine's learned models sit with its classic nodes (not in a second "Optics" folder)."""
from collections import defaultdict


def test_one_category_per_module():
    from vibeboard_runner.registry import NodeRegistry
    registry = NodeRegistry.default(embedded=True)
    by_module = defaultdict(set)
    for name, cls in registry.classes.items():
        if name.startswith("VB"):
            module = cls.__module__.split(".")
            folder = module[module.index("vibeboard") + 1] if "vibeboard" in module else module[0]
            by_module[folder].add(cls.CATEGORY)
    split = {folder: sorted(cats) for folder, cats in by_module.items() if len(cats) > 1}
    assert not split, split
    assert by_module["optics"] == by_module["optics_learned"] == {"VibeBoard/Optics Engine"}
    assert all(cat.startswith("VibeBoard/") for cats in by_module.values() for cat in cats)
