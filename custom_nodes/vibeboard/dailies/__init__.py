"""Dailies: version stacks per shot, review notes and annotations, approvals that drive assembly, automatic QC,
and notes turned into re-render requests."""
