"""The errors the on-call commands report to a person: a message and an exit code, never a traceback."""


class OpsError(Exception):
    """Something the operator must fix or know; the CLI prints the message and exits with `exit_code`."""

    exit_code = 1


class BadInput(OpsError):
    """An option that cannot be right (an inverted range, a malformed time or header filter)."""

    exit_code = 2


class UnknownTopic(OpsError):
    exit_code = 2


class UnknownGroup(OpsError):
    exit_code = 2


class BrokerUnavailable(OpsError):
    exit_code = 3


class DatabaseUnavailable(OpsError):
    """The services' database could not answer a lookup (`dlq reingest` reads accounts and payment attempts)."""

    exit_code = 3


class Refused(OpsError):
    """The broker's state makes the action unsafe (a consumer group with live members, a purged offset)."""

    exit_code = 1
