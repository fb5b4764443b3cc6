"""The official `openai` package against the running gateway.

Run by cynode-server/tests/chat_clients.rs, which serves the gateway on a loopback
socket over a mock LLM and sets CYNODE_GATEWAY_URL (base URL) and CYNODE_GATEWAY_TOKEN
(an access token). The mock answers every chat with MOCK_REPLY.
"""

import os

import openai
import pytest

BASE = os.environ["CYNODE_GATEWAY_URL"]
TOKEN = os.environ["CYNODE_GATEWAY_TOKEN"]
MOCK_REPLY = os.environ.get("CYNODE_MOCK_REPLY", "")


@pytest.fixture
def client():
    return openai.OpenAI(base_url=BASE + "/v1", api_key=TOKEN, max_retries=0, timeout=30)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "cynodeai.pm"
    assert "qwen3.5:0.8b" in ids


def test_chat_completion(client):
    res = client.chat.completions.create(
        model="cynodeai.pm",
        messages=[{"role": "user", "content": "Reply with exactly: OK"}],
    )
    assert res.object == "chat.completion"
    assert res.model == "cynodeai.pm"
    assert len(res.choices) == 1
    assert res.choices[0].message.role == "assistant"
    assert res.choices[0].message.content == MOCK_REPLY
    assert res.choices[0].finish_reason == "stop"


def test_direct_model_completion(client):
    res = client.chat.completions.create(
        model="qwen3.5:0.8b",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        temperature=0.1,
        max_tokens=16,
    )
    assert res.choices[0].message.content == MOCK_REPLY
    assert res.model == "qwen3.5:0.8b"


def test_streaming(client):
    stream = client.chat.completions.create(
        model="cynodeai.pm",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
    )
    parts = []
    finish = None
    chunks = 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk"
        choice = chunk.choices[0]
        if choice.delta.content:
            parts.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
    assert chunks >= 3
    assert "".join(parts) == MOCK_REPLY
    assert finish == "stop"


def test_errors_are_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="cynodeai.pm", messages=[])
    assert e.value.status_code == 400
    assert e.value.code == "invalid_request"
    assert "messages is required" in str(e.value)
    bad = openai.OpenAI(base_url=BASE + "/v1", api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_threads_hold_the_conversation(client):
    created = client.post("/chat/threads", body={}, cast_to=dict)
    thread_id = created["thread_id"]
    client.chat.completions.create(
        model="cynodeai.pm", messages=[{"role": "user", "content": "remember me"}]
    )
    msgs = client.get(f"/chat/threads/{thread_id}/messages", cast_to=dict)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == "remember me"
    assert msgs[1]["content"] == MOCK_REPLY
