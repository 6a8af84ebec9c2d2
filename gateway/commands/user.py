"""``ebts-gateway user add|list|disable|passwd``: admin console users with roles.

``add NAME --role viewer|operator|auditor`` and ``passwd NAME`` read the password from stdin
(asked twice without echo on a terminal; the first line of a pipe otherwise); at least 12
characters.  Each change is an audit record (channel ``cli``).  Exit 0, 1 when refused (the
message says why), 2 when the journal cannot be opened.
"""

from __future__ import annotations

import sys

from ._store import add_config_arguments, open_journal

NAME = "user"
HELP = "manage admin console users (add, list, disable, passwd)"


def add_arguments(parser) -> None:
    from gateway.store.users import ROLES

    sub = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add",
        help="a new user (password from stdin)",
        description="A new user (password from stdin).",
    )
    add.add_argument("name", help="the user name (letters, digits, . _ -)")
    add.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="viewer, operator or auditor (docs/security.md)",
    )
    add_config_arguments(add)
    listing = sub.add_parser(
        "list",
        help="users, roles and whether they are disabled or locked",
        description="Users, roles and whether they are disabled or locked.",
    )
    add_config_arguments(listing)
    disable = sub.add_parser(
        "disable",
        help="refuse further logins of a user",
        description="Refuse further logins of a user.",
    )
    disable.add_argument("name", help="the user to disable")
    add_config_arguments(disable)
    passwd = sub.add_parser(
        "passwd",
        help="a new password (from stdin); lifts a lockout",
        description="A new password (from stdin); lifts a lockout.",
    )
    passwd.add_argument("name", help="the user whose password changes")
    add_config_arguments(passwd)


def _password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password (12 characters or more): ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    line = sys.stdin.readline(4096)
    return line.rstrip("\r\n")


def run(args) -> int:
    from gateway.store.audit import Audit
    from gateway.store.crypto import KeyFileError
    from gateway.store.users import UserError, Users

    if args.user_command == "list" or args.user_command == "disable":
        password = None
    else:
        try:
            password = _password()
        except ValueError as exc:
            print(f"ebts-gateway: {exc}", file=sys.stderr)
            return 1
    # Only add makes a journal where there is none (users before the first start); list,
    # disable and passwd on a mistyped --data-dir say so instead of leaving a new one there.
    opened = open_journal(args, create=args.user_command == "add")
    if opened is None:
        return 2
    journal, _config = opened
    try:
        try:
            audit = Audit(journal)
        except KeyFileError as exc:
            print(f"ebts-gateway: {exc}", file=sys.stderr)
            return 2
        users = Users(journal)
        try:
            if args.user_command == "add":
                assert password is not None  # read above for every command but list and disable
                user = users.add(args.name, args.role, password)
                audit.record("user.added", channel="cli", user=user.name, role=user.role)
                print(f"user {user.name} added with role {user.role}")
            elif args.user_command == "list":
                for user in users.list():
                    info = user.public()
                    flags = [k for k in ("disabled", "locked") if info[k]]
                    print(f"{user.name}\t{user.role}\t{','.join(flags) or 'active'}")
            elif args.user_command == "disable":
                users.disable(args.name)
                audit.record("user.disabled", channel="cli", user=args.name)
                print(f"user {args.name} disabled")
            else:
                assert password is not None  # read above for every command but list and disable
                users.set_password(args.name, password)
                audit.record("user.password_changed", channel="cli", user=args.name)
                print(f"password of {args.name} changed")
        except UserError as exc:
            print(f"ebts-gateway: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        journal.close()
