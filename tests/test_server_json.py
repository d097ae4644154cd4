"""server.json against the vendored MCP Registry schema (2025-12-11), offline; versions and names kept in sync."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker  # type: ignore[import-untyped]

from clawvm_mcp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "server.schema.2025-12-11.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
MARKER = re.compile(r"<!-- mcp-name: (\S+) -->")


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def server() -> dict[str, Any]:
    return _load(ROOT / "server.json")


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = _load(SCHEMA_PATH)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=FormatChecker())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    assert isinstance(project, dict)
    return project


def _errors(validator: Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_server_json_is_valid_against_the_vendored_schema(server: dict[str, Any], validator: Draft7Validator) -> None:
    assert _errors(validator, server) == []


def test_vendored_schema_is_the_one_server_json_names(server: dict[str, Any]) -> None:
    assert server["$schema"] == SCHEMA_URL
    assert _load(SCHEMA_PATH)["$id"] == SCHEMA_URL


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("description",), "x" * 101),  # the registry caps descriptions at 100 characters
        (("name",), "clawvm-mcp"),  # reverse-DNS namespace with exactly one slash
        (("packages", 0, "version"), "latest"),
        (("packages", 0, "transport"), {"type": "carrier-pigeon"}),
    ],
)
def test_the_validator_is_live(
    server: dict[str, Any], validator: Draft7Validator, path: tuple[str | int, ...], value: object
) -> None:
    doc = copy.deepcopy(server)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _errors(validator, doc), f"{path} = {value!r} should be rejected"


def test_versions_are_in_sync_with_pyproject(server: dict[str, Any], pyproject: dict[str, Any]) -> None:
    assert server["version"] == pyproject["version"]
    assert [p["version"] for p in server["packages"]] == [pyproject["version"]]


def test_package_is_the_pypi_distribution(server: dict[str, Any], pyproject: dict[str, Any]) -> None:
    (package,) = server["packages"]
    assert package["registryType"] == "pypi"
    assert package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == pyproject["name"]
    assert package["transport"] == {"type": "stdio"}
    assert "clawvm-mcp" in pyproject["scripts"], "uvx runs the console script named like the package"


def test_readme_carries_the_mcp_name_marker(server: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = MARKER.findall(readme)
    assert names == [server["name"]], "README.md needs exactly one <!-- mcp-name: NAME --> matching server.json"
    assert server["name"] == "io.github.clawvm/clawvm-mcp"


def test_declared_arguments_and_environment_exist(server: dict[str, Any]) -> None:
    (package,) = server["packages"]
    parser = build_parser()
    for arg in package.get("packageArguments", []):
        assert arg["type"] == "named"
        args = parser.parse_args(["serve", arg["name"], "x"])  # the default verb accepts every declared flag
        assert getattr(args, arg["name"].lstrip("-").replace("-", "_")) is not None
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "clawvm_mcp").rglob("*.py"))
    for env in package.get("environmentVariables", []):
        assert f'"{env["name"]}"' in sources, f"{env['name']} is declared in server.json but never read"


def test_server_json_ships_in_the_sdist(pyproject: dict[str, Any]) -> None:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        include = tomllib.load(fh)["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert "server.json" in include
    assert pyproject["readme"] == "README.md"
