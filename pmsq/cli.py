"""The `pmsq` command line: run the API or the sandbox PMS, migrate, make tokens, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pmsq.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pmsq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the producer API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    sandbox = commands.add_parser("sandbox", help="serve the simulated PMS")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8001)

    commands.add_parser("migrate", help="bring the database to the latest schema")

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    token_create = token_commands.add_parser("create", help="print a new token for ACCOUNT")
    token_create.add_argument("account")

    commands.add_parser("demo", help="run the whole write path end to end on this machine")

    args = parser.parse_args(argv)
    if args.command == "api":
        return _serve_api(args.host, args.port)
    if args.command == "sandbox":
        from pms.sandbox.server import run

        run(args.host, args.port)
        return 0
    if args.command == "migrate":
        from models.migrate import upgrade

        upgrade(get_settings().database_url)
        return 0
    if args.command == "token":
        return _create_token(args.account)
    if args.command == "demo":
        from pmsq.demo import main as demo_main

        return demo_main()
    parser.error(f"unknown command {args.command}")
    return 2


def _serve_api(host: str, port: int) -> int:
    import redis
    import uvicorn

    from api.app import create_app
    from models.db import make_engine, make_session_factory
    from models.migrate import upgrade
    from workers.app import app as celery_app
    from workers.flow.redis_backend import RedisFlowControl
    from workers.publisher import CeleryPublisher

    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    redis_client = redis.Redis.from_url(settings.redis_url)
    app = create_app(
        settings,
        make_session_factory(engine),
        CeleryPublisher(celery_app, settings.job_queue),
        RedisFlowControl(redis_client),
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    redis_client.close()
    engine.dispose()
    return 0


def _create_token(account: str) -> int:
    from api.auth import create_token
    from models.db import make_engine, make_session_factory
    from models.migrate import upgrade

    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as session:
        token = create_token(session, account)
    engine.dispose()
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
