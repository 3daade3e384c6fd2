"""Managed-API nodes: fal.ai generation (FLUX, Kling, Luma, Veo), Grok vision tagging, a cost ledger and the
pod → API fallback. Plain modules here; `nodes.py` is the thin ComfyUI layer. The SDKs (`fal-client`,
`openai`) are the optional extra `api` and are imported only when a node runs."""
