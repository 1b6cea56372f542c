"""Counters that do not drift with the machine: Redis commands and PostgreSQL transactions, read before and
after a measured run, so a change that removes round trips shows as fewer per message whatever the cores did."""

from dataclasses import dataclass

import redis
import sqlalchemy

# INFO itself is counted by Redis; these calls are the counter's own and are left out.
_OWN_COMMANDS = ("info",)


def parse_commandstats(info: dict[str, dict[str, int]]) -> dict[str, int]:
    """Calls of each command in `INFO commandstats` (as redis-py parses it: `cmdstat_get: {calls: ...}`)."""
    return {
        name.removeprefix("cmdstat_"): int(stats.get("calls", 0))
        for name, stats in info.items()
        if name.startswith("cmdstat_") and name.removeprefix("cmdstat_") not in _OWN_COMMANDS
    }


@dataclass(frozen=True)
class RoundTrips:
    redis_by_command: dict[str, int]
    pg_transactions: int

    @property
    def redis_commands(self) -> int:
        return sum(self.redis_by_command.values())

    def __sub__(self, earlier: "RoundTrips") -> "RoundTrips":
        calls = {
            name: count - earlier.redis_by_command.get(name, 0)
            for name, count in self.redis_by_command.items()
            if count > earlier.redis_by_command.get(name, 0)
        }
        return RoundTrips(calls, self.pg_transactions - earlier.pg_transactions)

    def busiest_commands(self, per: int, top: int = 6) -> str:
        """The commands called most, per `per` (inbound messages): which ones a change should remove first.

        Redis counts the commands a script runs as well as the script's own EVALSHA, so these are commands
        the server ran, not round trips: a run at 45 commands a message made about 9 round trips a message
        (read off `MONITOR`, where a script's commands show as `lua`)."""
        ranked = sorted(self.redis_by_command.items(), key=lambda item: -item[1])[:top]
        return " ".join(f"{name} {count / max(1, per):.1f}" for name, count in ranked)


def read_round_trips(redis_url: str, database_url: str) -> RoundTrips:
    """Redis's commands since it started, and the database's committed and rolled-back transactions.

    PostgreSQL's per-database counts come from its statistics, which each backend reports at most once a
    second: over a run of many seconds the last second's shortfall is small, and the same for every run."""
    client = redis.Redis.from_url(redis_url)
    try:
        commands = parse_commandstats(client.info("commandstats"))
    finally:
        client.close()
    engine = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            transactions = int(connection.execute(sqlalchemy.text(query)).scalar_one())
    finally:
        engine.dispose()
    return RoundTrips(commands, transactions)
