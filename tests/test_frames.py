"""Rows for the raw tables: what is stored about a run never includes credentials."""

from __future__ import annotations

import json

from inference.frames import redacted_options


def test_credentials_in_options_are_redacted():
    stored = json.loads(redacted_options({
        "base_url": "https://alice:s3cret@llm.example.org:8443/v1",
        "api_key_env": "OPENAI_API_KEY",
        "backend": {"hf_token": "hf_abcdef", "device": "cuda"},
        "protocol": {"name": "single"},
    }))
    assert stored["base_url"] == "https://***@llm.example.org:8443/v1"
    assert stored["api_key_env"] == "OPENAI_API_KEY"  # a variable name, not a secret
    assert stored["backend"] == {"hf_token": "***", "device": "cuda"}
    assert stored["protocol"] == {"name": "single"}
    assert "s3cret" not in json.dumps(stored) and "hf_abcdef" not in json.dumps(stored)


def test_plain_urls_are_kept():
    assert json.loads(redacted_options({"base_url": "http://127.0.0.1:8000/v1"}))["base_url"] == "http://127.0.0.1:8000/v1"
