"""Schemathesis against the gateway's served OpenAPI document.

Run by cynode-server/tests/chat_clients.rs (see test_openai_client.py for the
environment). Every operation is exercised with generated data (examples, coverage and
fuzzing phases); the run must find no 5xx, no response that violates its documented
schema, status code or content type.
"""

import os
import pathlib
import subprocess
import sys

BASE = os.environ["CYNODE_GATEWAY_URL"]
TOKEN = os.environ["CYNODE_GATEWAY_TOKEN"]


def test_schemathesis_finds_nothing(tmp_path: pathlib.Path):
    cli = pathlib.Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli),
        "run",
        BASE + "/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        os.environ.get("CYNODE_SCHEMATHESIS_EXAMPLES", "40"),
        "--workers",
        "1",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    out = res.stdout + res.stderr
    print(out)
    assert res.returncode == 0, out[-20000:]
