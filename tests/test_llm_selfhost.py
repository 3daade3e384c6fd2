"""Self-host path: a tiny random MiniMaxM2ForCausalLM in the published layout behind the OpenAI-compatible shim,
reached through the real `openai` SDK by the same provider code the hosted API uses."""
import pytest
import torch

from vibeboard.llm import LLMConfig
from vibeboard.llm.selfhost import LocalChatServer, parse_tool_calls
from vibeboard.llm.structured import StructuredOutputError, call_tool


@pytest.fixture(scope="module")
def tiny_minimax(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MiniMaxM2Config, MiniMaxM2ForCausalLM, PreTrainedTokenizerFast
    folder = tmp_path_factory.mktemp("MiniMax-M2.1-tiny")
    words = ["<pad>", "<s>", "</s>", "<unk>"] + "system user assistant : the a lamp storm scene props rain".split()
    words += [f"w{i}" for i in range(64 - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))
    cfg = MiniMaxM2Config(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_local_experts=4,
                          num_experts_per_tok=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                          pad_token_id=0)
    torch.manual_seed(0)
    MiniMaxM2ForCausalLM(cfg).save_pretrained(str(folder))   # config.json + model.safetensors
    server = LocalChatServer(str(folder), model_name="MiniMax-M2.1-tiny").start()
    yield server
    server.stop()


def test_tiny_minimax_answers_through_the_openai_route(tiny_minimax):
    provider = LLMConfig(protocol="openai", base_url=tiny_minimax.url, model="MiniMax-M2.1-tiny",
                         api_key_env="NO_KEY_NEEDED_ON_LOOPBACK", max_retries=0).provider()
    done = provider.complete("system", [{"role": "user", "content": "the storm scene props"}], max_tokens=6)
    assert done.model == "MiniMax-M2.1-tiny" and done.usage["output_tokens"] == 6 and done.usage["input_tokens"] > 3
    again = provider.complete("system", [{"role": "user", "content": "the storm scene props"}], max_tokens=6)
    assert again.text == done.text   # greedy: deterministic


def test_random_weights_make_no_tool_call_and_the_structured_call_fails_loudly(tiny_minimax):
    from pydantic import BaseModel
    provider = LLMConfig(protocol="openai", base_url=tiny_minimax.url, model="MiniMax-M2.1-tiny",
                         api_key_env="NO_KEY_NEEDED_ON_LOOPBACK", max_retries=0).provider()

    class Answer(BaseModel):
        value: int

    with pytest.raises(StructuredOutputError, match="no call of the tool answer"):
        call_tool(provider, "", "answer", "answer", "Answer.", Answer, max_tokens=4)


def test_minimax_xml_tool_calls_become_openai_tool_calls():
    text, calls = parse_tool_calls('Sure.<minimax:tool_call>\n<invoke name="route_request">\n<parameter name='
                                   '"workflow">rack_focus</parameter>\n<parameter name="confidence">0.8</parameter>\n'
                                   '</invoke>\n</minimax:tool_call>')
    assert text == "Sure." and calls[0]["function"]["name"] == "route_request"
    assert calls[0]["function"]["arguments"] == '{"workflow": "rack_focus", "confidence": 0.8}'
