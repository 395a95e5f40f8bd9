"""The ``myelin`` command line: generate-config, run, register-user, media, and the admin
commands of ``homeserver/admin_cli.py`` (list-users, deactivate-user, ...).

Errors a person can fix (bad config, unreachable database, file exists)
print one line to stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import os

# Before anything imports aiohttp: frozenlist (aiohttp's lists of signal handlers and
# middlewares, read once a request at most) in its pure-Python form, which behaves the
# same. Its C++ extension would map libstdc++ into the server, ~1.2 MiB of resident
# memory for no measurable speed (benchmarks/README.md, rss-idle). An operator's own
# FROZENLIST_NO_EXTENSIONS (even empty) wins.
os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")

import argparse
import asyncio
import logging
import secrets
import signal
import sys
from pathlib import Path

import yaml

from homeserver import admin_cli
from homeserver.config import ConfigError, load_config
from homeserver.memory import limit_malloc_arenas
from homeserver.storage.database import DatabaseUnavailable


class CliError(Exception):
    """A problem stated in one line for the operator."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="myelin", description="Myelin Matrix homeserver")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate-config", help="write a config, signing key and TLS certificate")
    g.add_argument("--server-name", required=True)
    g.add_argument("--data-dir", required=True)
    g.add_argument("--client-port", type=int, default=8008)
    g.add_argument("--federation-port", type=int, default=8448)
    g.add_argument("--bind", default="127.0.0.1")
    g.add_argument("--database-url", default=None)
    g.add_argument("--open-registration", action="store_true")
    g.add_argument("--registration-shared-secret", default=None)
    g.add_argument("--allow-guests", action="store_true", help="let guest accounts register")
    g.add_argument("--insecure-local-federation", action="store_true")
    g.add_argument("--no-rate-limits", action="store_true")
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="add N generic workers (worker1..N, client ports +1..+N; needs PostgreSQL)",
    )
    g.add_argument("--force", action="store_true")

    r = sub.add_parser("run", help="run the server in the foreground")
    r.add_argument("--config", required=True)
    r.add_argument("--worker", default=None, help="run as this worker of the config's workers")

    u = sub.add_parser("register-user", help="create a local account")
    u.add_argument("--config", required=True)
    u.add_argument("username")
    u.add_argument("--password", default=None)
    u.add_argument("--admin", action="store_true")

    m = sub.add_parser("media", help="media repository upkeep")
    msub = m.add_subparsers(dest="media_command", required=True)
    pr = msub.add_parser("purge-remote", help="delete cached remote media not read for DAYS")
    pr.add_argument("--config", required=True)
    pr.add_argument("--before", type=int, required=True, metavar="DAYS")
    q = msub.add_parser("quarantine", help="stop serving a media id and delete its bytes")
    q.add_argument("--config", required=True)
    q.add_argument("mxc", help="mxc://server/mediaId")
    admin_cli.add_parsers(sub)
    return p


# ---------------------------------------------------------------- generate


def generate_config(args: argparse.Namespace) -> None:
    from homeserver.events.identifiers import is_valid_server_name
    from homeserver.events.keys import encode_signing_key_line, generate_signing_key
    from homeserver.tls import write_self_signed

    if not is_valid_server_name(args.server_name):
        raise CliError(f"--server-name: {args.server_name!r} is not a valid server name")
    for flag, port in (
        ("--client-port", args.client_port),
        ("--federation-port", args.federation_port),
    ):
        if not 0 <= port <= 65535:
            raise CliError(f"{flag}: {port} is not a TCP port")
    if not 0 <= args.workers <= 64:
        raise CliError(f"--workers: {args.workers} is not between 0 and 64")
    if args.workers and not (args.database_url or "").startswith(("postgresql://", "postgres://")):
        raise CliError(
            "--workers: several processes need PostgreSQL (--database-url postgresql://...);"
            " SQLite serves one process only"
        )
    if args.workers and not 0 < args.client_port + args.workers <= 65535:
        raise CliError(f"--workers: client ports {args.client_port}+1..+{args.workers} do not fit")
    data_dir = Path(args.data_dir).resolve()
    config_path = data_dir / "homeserver.yaml"
    if config_path.exists() and not args.force:
        raise CliError(f"{config_path} exists; pass --force to overwrite it")
    data_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "server_name": args.server_name,
        "data_dir": ".",
        "database_url": args.database_url or f"sqlite:///{data_dir / 'homeserver.db'}",
        "signing_key_path": "signing.key",
        "tls_certificate_path": "tls.crt",
        "tls_private_key_path": "tls.key",
        "client_listener": {"bind": args.bind, "port": args.client_port},
        "federation_listener": {"bind": args.bind, "port": args.federation_port},
        "registration": {
            "enabled": bool(args.open_registration),
            "shared_secret": args.registration_shared_secret,
            "allow_guests": bool(args.allow_guests),
        },
        "rate_limits": {"enabled": not args.no_rate_limits},
        "federation": {"insecure_local": bool(args.insecure_local_federation)},
    }
    if args.workers:
        # Generic workers: each serves the whole client API on its own port (README
        # "Scaling out"); start each with `myelin run --config C --worker workerN`.
        config["workers"] = {
            f"worker{i}": {"client_port": args.client_port + i} for i in range(1, args.workers + 1)
        }
    key = generate_signing_key("a_" + secrets.token_hex(2))
    _write_private(data_dir / "signing.key", encode_signing_key_line(key) + "\n")
    write_self_signed(args.server_name, data_dir / "tls.crt", data_dir / "tls.key")
    _write_private(
        config_path,
        "# Myelin configuration; see config.example.yaml for every option.\n"
        + yaml.safe_dump(config, sort_keys=False),
    )
    print(f"wrote {config_path}")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------- run


def _setup_logging(level: str, log_format: str = "text") -> None:
    from homeserver.logs import install_log_handler

    install_log_handler(level, log_format, sys.stderr)


async def _run(config_path: str, worker: str | None = None) -> None:
    from homeserver.app import start, start_worker
    from homeserver.heap import settle_after_start

    config = load_config(config_path)
    _setup_logging(config.log_level, config.logging.format)
    log = logging.getLogger("myelin")
    if config.federation.insecure_local:
        log.warning(
            "insecure_local federation is ON: loopback peers allowed and TLS certificates "
            "NOT verified. Use this only for tests on one machine."
        )
    if worker is not None:
        running = await start_worker(config, worker)
        from homeserver.scaleout import roles

        log.info(
            "%s worker %s (%s): client API on %s, federation on port %s",
            config.server_name,
            worker,
            ", ".join(sorted(roles(running.hs, worker))),
            running.client_url if running.client_port else "-",
            running.federation_port or "-",
        )
    else:
        running = await start(config)
        log.info(
            "%s serving the client API on %s, federation on port %d",
            config.server_name,
            running.client_url,
            running.federation_port,
        )
    # Started: the heap built so far lives as long as the process (``heap``).
    settle_after_start()
    if running.metrics_port:
        log.info(
            "metrics on http://%s:%d/metrics", config.metrics.bind_address, running.metrics_port
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost = running.hs.lock_lost
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    log.info("shutting down")
    await running.stop()
    log.info("stopped")
    if lost.is_set():
        raise CliError("another process took the database lock; stopped to keep the database safe")


# ----------------------------------------------------------- register-user


async def _register_user(args: argparse.Namespace) -> None:
    from homeserver.app import HomeServer
    from homeserver.errors import MatrixError

    config = load_config(args.config)
    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            raise CliError("--password is required when not run interactively")
        import getpass  # a terminal prompt: only these commands load it

        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise CliError("passwords do not match")
    # Adds one account row beside a running server: no process lock.
    hs = await HomeServer.build(config, exclusive=False)
    try:
        user_id = await hs.accounts.check_available(args.username)
        await hs.accounts.create_account(user_id, password, is_admin=args.admin)
    except MatrixError as e:
        raise CliError(f"cannot register {args.username}: {e.error}") from None
    finally:
        await hs.close()
    print(f"registered {user_id}{' (admin)' if args.admin else ''}")


# ------------------------------------------------------------------- media


async def _media(args: argparse.Namespace) -> None:
    from homeserver.app import HomeServer
    from homeserver.media.ids import parse_mxc

    config = load_config(args.config)
    target: tuple[str, str] | None = None
    if args.media_command == "purge-remote":
        if args.before < 0:
            raise CliError("--before: DAYS must not be negative")
    else:
        try:
            target = parse_mxc(args.mxc)
        except ValueError:
            raise CliError(f"{args.mxc!r} is not a valid mxc:// URI") from None
    # Beside a running server, like the admin commands: no process lock taken.
    hs = await HomeServer.build(config, exclusive=False)
    try:
        if target is None:
            before_ts = hs.clock.now_ms() - args.before * 24 * 60 * 60 * 1000
            count = await hs.media.purge_remote(before_ts)
            print(f"purged {count} remote media not read for {args.before} days")
        elif await hs.media.quarantine(*target):
            print(f"quarantined {args.mxc}")
        else:
            raise CliError(f"no local media {args.mxc}")
    finally:
        await hs.close()


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate-config":
            generate_config(args)
        elif args.command == "run":
            limit_malloc_arenas()  # before any thread starts (see homeserver/memory.py)
            _use_uvloop()
            asyncio.run(_run(args.config, args.worker))
        elif args.command == "register-user":
            asyncio.run(_register_user(args))
        elif args.command == "media":
            asyncio.run(_media(args))
        elif args.command in admin_cli.COMMANDS:
            print(asyncio.run(admin_cli.run(args)))
    except (CliError, admin_cli.AdminCliError, ConfigError, DatabaseUnavailable) as e:
        print(f"myelin: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"myelin: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
