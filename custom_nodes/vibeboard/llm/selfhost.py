"""A minimal OpenAI-compatible chat server around a local transformers causal LM (the self-host path).

Production self-hosting of MiniMax-M2.1 is vLLM/SGLang (`--tool-call-parser minimax_m2 --reasoning-parser
minimax_m2`) on ≥4 large GPUs; this shim exists so the same OpenAI-route code can be exercised end to end on
any machine with a model in the published layout (config.json + safetensors, e.g. a tiny random
`MiniMaxM2ForCausalLM`). It applies the tokenizer's chat template when the checkpoint ships one, generates
greedily, and turns MiniMax's XML tool-call blocks into OpenAI `tool_calls`:

    <minimax:tool_call><invoke name="NAME"><parameter name="KEY">VALUE</parameter>…</invoke></minimax:tool_call>
Loopback only; one request at a time.
"""
from __future__ import annotations

import json
import re
import threading
import time

from vibeboard.common.replay_server import LoopbackServer, json_reply

_CALL = re.compile(r"<minimax:tool_call>(.*?)</minimax:tool_call>", re.S)
_INVOKE = re.compile(r"<invoke name=\"([^\"]+)\">(.*?)</invoke>", re.S)
_PARAM = re.compile(r"<parameter name=\"([^\"]+)\">(.*?)</parameter>", re.S)
MAX_NEW_TOKENS = 256


def parse_tool_calls(text: str) -> tuple:
    """(text without tool-call blocks, [OpenAI tool_calls])."""
    calls = []
    for block in _CALL.findall(text):
        for name, body in _INVOKE.findall(block):
            args = {}
            for key, value in _PARAM.findall(body):
                value = value.strip()
                try:
                    args[key] = json.loads(value)
                except ValueError:
                    args[key] = value
            calls.append({"id": f"call_{len(calls) + 1}", "type": "function",
                          "function": {"name": name, "arguments": json.dumps(args)}})
    return _CALL.sub("", text).strip(), calls


class LocalChatServer(LoopbackServer):
    """The shim on the pack's loopback server (common/replay_server.py), answering from the model."""

    def __init__(self, model_dir: str, model_name: str = "local"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.model_name = model_name
        self.lock = threading.Lock()
        super().__init__(log_requests=False)  # a long-lived server: keep no request bodies

    @property
    def url(self) -> str:  # what an OpenAI-style base_url points at
        return self.base + "/v1"

    def answer(self, request: dict):
        if request["method"] != "POST" or not request["path"].rstrip("/").endswith("/chat/completions"):
            return json_reply(404, {"error": {"message": f"no route {request['method']} {request['path']}"}})
        try:
            reply = self.chat(json.loads(request["body"] or b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            return json_reply(400, {"error": {"message": f"bad request: {exc}"}})
        return json_reply(200, reply)

    def _prompt(self, messages, tools) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m.get('content') or ''}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def chat(self, body: dict) -> dict:
        prompt = self._prompt(body["messages"], body.get("tools"))
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        limit = min(int(body.get("max_tokens") or MAX_NEW_TOKENS), MAX_NEW_TOKENS)
        with self.lock, self.torch.no_grad():
            out = self.model.generate(ids, max_new_tokens=limit, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        content, calls = parse_tool_calls(text)
        message = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return {"id": f"chatcmpl-local-{int(time.time() * 1000)}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": int(ids.shape[1]), "completion_tokens": int(new.shape[0]),
                          "total_tokens": int(ids.shape[1] + new.shape[0])}}
