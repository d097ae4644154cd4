"""Console script ``clawvm-mcp``: serve (default), lifecycle, inspect, and the verbs other modules register."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from . import __version__
from .cli_options import add_db, add_grants, add_principal, db_path, grants
from .engine import EngineConfig

log = logging.getLogger("clawvm_mcp")
DEFAULT_LOG_LEVEL = (
    "WARNING"  # a CLI verb prints its answer; progress lines (schema migrations) are for CLAWVM_LOG=INFO
)
EPILOG = "Logging goes to stderr at WARNING; set CLAWVM_LOG=INFO (or DEBUG) for more."
_RST_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """Help text from a docstring without its reStructuredText: ````clawvm-mcp bench```` prints as 'clawvm-mcp bench'."""
    return None if text is None else _RST_LITERAL.sub(r"'\1'", text)


def __getattr__(name: str) -> tuple[str, ...]:
    """``VERBS``: every verb the parser knows, read off the parser so that a newly registered verb is one."""
    if name == "VERBS":
        verbs: tuple[str, ...] = build_parser().get_default("verbs")
        return verbs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clawvm-mcp",
        description="Harness-managed virtual memory for agents, served over MCP. Without a verb: serve over stdio.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"clawvm-mcp {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    serve = sub.add_parser(
        "serve",
        help="run the MCP server (stdio by default)",
        description="Run the MCP server over stdio, or streamable HTTP with --http.",
    )
    add_db(serve)
    add_principal(serve)
    add_grants(serve)
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--no-auth", action="store_true", help="HTTP without a bearer token (loopback testing only)")
    serve.add_argument(
        "--tokens",
        type=Path,
        default=None,
        metavar="FILE",
        help="HTTP: per-token principals from a JSON file of sha256-hashed tokens with their grants "
        "(reloaded on SIGHUP); replaces CLAWVM_TOKEN and --principal",
    )
    serve.add_argument(
        "--oauth",
        action="store_true",
        help="HTTP: principals from OAuth 2.1 JWT access tokens (iss|sub; grants from clawvm:project:ID:read|write "
        "scopes); needs --oauth-issuer and --oauth-jwks",
    )
    serve.add_argument("--oauth-issuer", default=None, metavar="URL", help="--oauth: the required iss claim")
    serve.add_argument(
        "--oauth-jwks", type=Path, default=None, metavar="FILE", help="--oauth: JWK Set file (reloaded on SIGHUP)"
    )
    serve.add_argument(
        "--oauth-resource", default=None, metavar="URL", help="--oauth: public URL (default http://HOST:PORT/mcp)"
    )
    serve.add_argument(
        "--oauth-audience", default=None, metavar="AUD", help="--oauth: required aud (default: resource)"
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=512,
        metavar="N",
        help="HTTP: open connections at most (lowered to fit the file-descriptor limit; default 512)",
    )
    serve.add_argument(
        "--header-timeout", type=float, default=10.0, metavar="S", help="HTTP: seconds to send a request head"
    )
    serve.add_argument("--body-timeout", type=float, default=30.0, metavar="S", help="HTTP: seconds to send a body")
    serve.set_defaults(func=cmd_serve)

    life = sub.add_parser(
        "lifecycle",
        help="report a lifecycle event for a session (for harness hooks)",
        description="Commit staged writes and record a lifecycle event, as the lifecycle tool "
        "does; meant for harness hooks (PreCompact, SessionEnd, ...). Prints JSON.",
    )
    add_db(life)
    add_principal(life)
    add_grants(life)
    life.add_argument("--session", required=True, help="session id")
    life.add_argument(
        "--event",
        required=True,
        choices=["turn_end", "compaction", "reset", "flush", "session_end"],
        help="turn_end: a turn is over; compaction, reset, flush, session_end: a boundary, where staged writes commit",
    )
    life.set_defaults(func=cmd_lifecycle)

    insp = sub.add_parser(
        "inspect",
        help="show a session's pages, journal and faults",
        description="Read-only view of a session: page table, journal and fault counts.",
    )
    add_db(insp)
    insp.add_argument("--session", required=True, help="session id")
    insp.add_argument("--html", type=Path, default=None, help="also write a self-contained HTML report here")
    insp.set_defaults(func=cmd_inspect)

    from . import importer, top
    from .harness import claude_code
    from .replay import bench
    from .replay import cli as replay_cli

    importer.register(sub)
    claude_code.register(sub)
    replay_cli.register(sub)
    bench.register(sub)
    top.register(sub)
    for verb in sub.choices.values():
        verb.description = plain(verb.description)
        verb.epilog = verb.epilog or EPILOG
    parser.set_defaults(verbs=tuple(sub.choices))
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import ServerConfig, create_server
    from .server.principals import MIN_ENV_TOKEN_CHARS, PrincipalVerifier, TableVerifier, TokenFileError
    from .store import StoreError, open_store

    db = db_path(args)
    token = os.environ.get("CLAWVM_TOKEN")
    tokens: PrincipalVerifier | None = None
    if args.max_connections < 1 or args.header_timeout <= 0 or args.body_timeout <= 0:
        print("Error: --max-connections, --header-timeout and --body-timeout must be positive", file=sys.stderr)
        return 2
    if args.oauth:
        if not args.http or args.no_auth or args.tokens is not None:
            print("Error: --oauth is for --http, without --tokens or --no-auth", file=sys.stderr)
            return 2
        if not args.oauth_issuer or args.oauth_jwks is None:
            print("Error: --oauth needs --oauth-issuer URL and --oauth-jwks FILE", file=sys.stderr)
            return 2
        from .server.oauth import JwtVerifier, OAuthConfigError

        resource = args.oauth_resource or f"http://{args.host}:{args.port}/mcp"
        try:
            tokens = JwtVerifier(args.oauth_jwks, args.oauth_issuer, args.oauth_audience or resource, resource)
        except OAuthConfigError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
    elif args.tokens is not None:
        if not args.http or args.no_auth:
            print("Error: --tokens is for --http with authentication (not stdio, not --no-auth)", file=sys.stderr)
            return 2
        try:
            tokens = TableVerifier(args.tokens)
        except TokenFileError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
    elif args.http and not args.no_auth:
        if token is None:
            print(
                "Error: --http needs a bearer token in CLAWVM_TOKEN, or --tokens FILE "
                "(or --no-auth, for loopback testing only)",
                file=sys.stderr,
            )
            return 2
        if len(token.strip()) < MIN_ENV_TOKEN_CHARS:
            print(f"Error: CLAWVM_TOKEN must be at least {MIN_ENV_TOKEN_CHARS} characters", file=sys.stderr)
            return 2

    async def check() -> None:  # fail before the transport opens, with one clear line
        store = await open_store(db)
        await store.close()

    try:
        anyio.run(check)
    except StoreError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(
        db=db, principal=args.principal, engine=EngineConfig(grants=grants(args.grant)), tokens=tokens
    )
    server = create_server(config)
    if args.http:
        from .server.http import Limits, serve_http

        auth = "off" if args.no_auth else "oauth" if args.oauth else "tokens file" if tokens is not None else "bearer"
        log.info("serving http://%s:%d/mcp (auth %s)", args.host, args.port, auth)
        single = None if args.no_auth or tokens is not None else token
        limits = Limits(args.header_timeout, args.body_timeout, args.max_connections)
        anyio.run(serve_http, server, args.host, args.port, single, tokens, limits)
    else:
        server.run()
    return 0


def cmd_lifecycle(args: argparse.Namespace) -> int:
    from .engine import ClawVMEngine, EngineError
    from .store import StoreError, open_store

    async def run() -> str:
        store = await open_store(db_path(args))
        try:
            engine = ClawVMEngine(store, config=EngineConfig(principal=args.principal, grants=grants(args.grant)))
            result = await engine.lifecycle(args.session, args.event)
            return result.model_dump_json()
        finally:
            await store.close()

    try:
        print(anyio.run(run))
    except (EngineError, StoreError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_session
    from .store import StoreError

    try:
        text = anyio.run(inspect_session, db_path(args), args.session, args.html)
    except (StoreError, LookupError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CLAWVM_LOG", DEFAULT_LOG_LEVEL),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in (*parser.get_default("verbs"), "-h", "--help", "--version"):
        argv.insert(0, "serve")
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
