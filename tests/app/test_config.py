from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from app.chat.retrying import asks_for_reasoning
from app.config import (
    FIRST_TOKEN_SECONDS,
    MIB,
    THINKING_FIRST_TOKEN_SECONDS,
    ConfigError,
    GatewayConfig,
    Reliability,
    check_providers,
    load_config,
    parse_config,
)
from app.services import Services
from providers.base import Deployment, Timeouts
from providers.catalog import ProviderSpec
from providers.request import CHAT_REQUEST_DECODER
from providers.router import ModelConfig, Router


def parse(text: str, **environ: str) -> GatewayConfig:
    return parse_config(text, source="test.yaml", environ=environ)


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config.limits.max_body_bytes == 8 * MIB
    assert config.models == {}


def test_models_and_limits_are_read(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("limits: {max_body_bytes: 4096}\nmodels:\n  demo: {provider: simulated, model: echo}\n")
    config = load_config(str(path))
    assert config.limits.max_body_bytes == 4096
    assert config.models == {"demo": ModelConfig("simulated", "echo")}


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${MODEL}", {"MODEL": "echo"}, "echo"),
        ("${MODEL:-synthetic}", {}, "synthetic"),
        ("${MODEL:-synthetic}", {"MODEL": ""}, "synthetic"),
        ("${MODEL}", {}, ""),
        ("pre-${A}-${B:-b}", {"A": "a"}, "pre-a-b"),
    ],
)
def test_interpolation(value: str, environ: dict[str, str], expected: str) -> None:
    config = parse(f'models: {{x: {{provider: simulated, model: "{value}"}}}}', **environ)
    assert config.models["x"].model == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("limit: {}", "unknown field `limit`"),
        (
            "models: {fast: {provider: simulated}}",
            "either provider and model, or a non-empty list of deployments at key models.fast",
        ),
        ("models: {fast: {provider: simulated, model: echo, extra: 1}}", "unknown field `extra` at key models.fast"),
        ("limits: {max_body_bytes: 10}", "at key limits.max_body_bytes"),
        ("models: [1, 2]", "at key models"),
        ("models: {a: [}", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"test\.yaml") as info:
        parse(text)
    assert fragment in str(info.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(str(tmp_path / "missing.yaml"))


def test_alias_to_an_unknown_provider_is_named() -> None:
    config = GatewayConfig(models={"fast": ModelConfig("groq", "llama")})
    with pytest.raises(ConfigError, match=r"models\.fast names provider 'groq'"):
        check_providers(config, ["simulated"])


def test_providers_are_read_with_interpolated_keys() -> None:
    config = parse(
        'providers:\n  groq: {type: openai, base_url: "https://api.groq.com/openai/v1", api_key: "${GROQ_API_KEY}"}\n'
        "models:\n  fast: {provider: groq, model: llama-3.1-8b-instant}\n"
        "  codex: {provider: openai, model: gpt-5-codex, api: responses}\n",
        GROQ_API_KEY="gsk-1",
    )
    assert config.providers["groq"] == ProviderSpec("openai", "https://api.groq.com/openai/v1", "gsk-1")
    assert config.models["codex"].api == "responses"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("providers: {groq: {type: openia}}", "at key providers.groq.type"),
        ("providers: {groq: {type: openai, url: x}}", "unknown field `url` at key providers.groq"),
        ("models: {m: {provider: openai, model: x, api: completions}}", "at key models.m.api"),
        ("http: {transport: curl}", "http.transport is 'curl'"),
        ("providers: {simulated: {type: openai}}", "built-in provider's name"),
    ],
)
def test_bad_provider_config_names_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert fragment in str(info.value)


def test_mcp_servers_take_headers_from_the_environment() -> None:
    config = parse(
        "mcp_servers:\n"
        "  search: {url: 'https://mcp.test/mcp', headers: {Authorization: 'Bearer ${SEARCH_TOKEN}'}, timeout: 5}\n"
        "models:\n"
        "  agent: {provider: simulated, model: echo, mcp: [search]}\n",
        SEARCH_TOKEN="tok-123",
    )
    server = config.mcp_servers["search"]
    assert (server.url, server.headers, server.timeout) == (
        "https://mcp.test/mcp",
        {"Authorization": "Bearer tok-123"},
        5,
    )
    assert config.models["agent"].mcp == ["search"]


def test_an_alias_naming_an_unknown_mcp_server_stops_start_up() -> None:
    config = parse("models:\n  agent: {provider: simulated, model: echo, mcp: [nowhere]}\n")
    with pytest.raises(ConfigError, match=r"models\.agent\.mcp names MCP server 'nowhere'"):
        check_providers(config, {"simulated"})


def test_a_bad_mcp_server_entry_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"mcp_servers\.search"):
        parse("mcp_servers:\n  search: {address: 'https://mcp.test/mcp'}\n")


def test_first_token_is_25_s_or_300_s_when_reasoning_is_asked_for_and_any_setting_wins() -> None:
    services = Services(Router([]), GatewayConfig(), b"")
    deployment = Deployment("openai", "gpt-5")
    assert services.timeouts_for(deployment, None).first_token == FIRST_TOKEN_SECONDS == 25
    assert services.timeouts_for(deployment, None, thinking=True).first_token == THINKING_FIRST_TOKEN_SECONDS == 300
    assert services.timeouts_for(deployment, Timeouts(first_token=60), thinking=True).first_token == 60
    configured = Services(Router([]), GatewayConfig(reliability=Reliability(timeouts=Timeouts(first_token=9))), b"")
    assert configured.timeouts_for(deployment, None, thinking=True).first_token == 9


def test_the_defaults_bound_a_silent_upstream() -> None:
    """A lone silent deployment gets two first-token waits and one backoff; with a fallback, the
    fallback starts after one wait."""
    reliability = Reliability()
    lone = 2 * FIRST_TOKEN_SECONDS + reliability.backoff.base
    assert lone < 60
    assert FIRST_TOKEN_SECONDS < 100


@pytest.mark.parametrize(
    ("effort", "thinks"), [(None, False), ("none", False), ("minimal", False), ("low", True), ("high", True)]
)
def test_what_counts_as_asking_for_reasoning(effort: str | None, thinks: bool) -> None:
    chat = CHAT_REQUEST_DECODER.decode(b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    assert asks_for_reasoning(msgspec.structs.replace(chat, reasoning_effort=effort)) is thinks


@pytest.mark.parametrize("larger", ["nowhere", "unknown/model", "small"])
def test_a_context_fallback_that_names_nothing_known_stops_start_up(larger: str) -> None:
    config = parse(f"models:\n  small: {{provider: simulated, model: echo, context_fallbacks: [{larger}]}}\n")
    with pytest.raises(ConfigError, match=r"models\.small\.context_fallbacks names"):
        check_providers(config, {"simulated"})


def test_context_fallbacks_may_name_aliases_and_provider_models() -> None:
    config = parse(
        "models:\n  small: {provider: simulated, model: echo, context_fallbacks: [big, simulated/synthetic]}\n"
        "  big: {provider: simulated, model: echo}\n"
    )
    check_providers(config, {"simulated"})
