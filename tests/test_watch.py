"""Provider listings for watched models, through real HTTP against loopback servers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.watch import ProviderUnavailable, WatchConfig, list_versions
from tests.support.gemini_server import GeminiServer
from tests.support.openai_server import OpenAIServer


def test_openai_compatible_listing_filters_by_pattern(monkeypatch):
    monkeypatch.setenv("FER_TEST_KEY", "sk-sentinel-watch")
    with OpenAIServer(models=("gpt-4o-2024-08-06", "gpt-4o-mini", "o1-preview", "gpt-4o-2024-11-20")) as server:
        watch = WatchConfig(provider="openai", pattern="gpt-4o-20*", base_url=server.base_url, api_key_env="FER_TEST_KEY")
        found = list_versions(watch)
        assert [v.version for v in found] == ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]
        assert server.requests[-1].headers["authorization"] == "Bearer sk-sentinel-watch"
        assert all("sentinel" not in v.source for v in found)
        server.models = (*server.models, "gpt-4o-2025-02-01")  # a new version appears
        assert [v.version for v in list_versions(watch)][-1] == "gpt-4o-2025-02-01"


def test_gemini_listing_strips_the_models_prefix():
    with GeminiServer(models=("gemini-2.0-flash", "gemini-2.5-flash-lite", "gemini-1.5-pro")) as server:
        watch = WatchConfig(provider="gemini", pattern="gemini-2.*-flash*", base_url=server.base_url)
        assert [v.version for v in list_versions(watch)] == ["gemini-2.0-flash", "gemini-2.5-flash-lite"]


def test_a_provider_that_is_down_raises_unavailable_with_a_reason():
    with OpenAIServer() as server:
        url = server.base_url
    with pytest.raises(ProviderUnavailable, match="openai: .*Connection"):
        list_versions(WatchConfig(provider="openai", base_url=url, timeout_s=2))


class _HubHandler(BaseHTTPRequestHandler):
    """The slice of the Hugging Face Hub API that `HfApi.model_info` calls."""

    sha = "a" * 40
    fail = False

    def do_GET(self):  # noqa: N802 - http.server API
        if self.fail:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"down for maintenance")
            return
        if not self.path.startswith("/api/models/org/tiny-vlm/revision/main"):
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"id": "org/tiny-vlm", "modelId": "org/tiny-vlm", "sha": self.sha, "siblings": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _HubHandler.sha, _HubHandler.fail = "a" * 40, False
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_huggingface_revision_is_the_version(hub):
    watch = WatchConfig(provider="huggingface", repo_id="org/tiny-vlm", base_url=hub)
    first = list_versions(watch)
    assert [v.version for v in first] == ["main-aaaaaaaaaaaa"] and first[0].details["sha"] == "a" * 40
    _HubHandler.sha = "b" * 40  # the branch moved: a new version
    assert [v.version for v in list_versions(watch)] == ["main-bbbbbbbbbbbb"]
    _HubHandler.fail = True
    with pytest.raises(ProviderUnavailable, match="huggingface"):
        list_versions(watch)


def test_folder_entries_are_versions(tmp_path):
    for name in ("v1", "v2", ".partial", "notes"):
        (tmp_path / name).mkdir()
    watch = WatchConfig(provider="folder", path=str(tmp_path), pattern="v*")
    assert [v.version for v in list_versions(watch)] == ["v1", "v2"]
    with pytest.raises(ProviderUnavailable, match="not a directory"):
        list_versions(WatchConfig(provider="folder", path=str(tmp_path / "missing")))


def test_watch_config_names_what_is_missing():
    with pytest.raises(ValueError, match="huggingface needs repo_id"):
        WatchConfig(provider="huggingface")
    with pytest.raises(ValueError, match="folder needs path"):
        WatchConfig(provider="folder")
