"""What the failover tests share: how a primary sees its standby."""

STANDBY = "standby"  # the standby's cluster_name, and so its application_name


def replication_state(primary) -> tuple[str, ...] | None:
    """Return the standby's (state, sync_state) as the primary reports them."""
    rows = primary.psql(
        "SELECT state, sync_state FROM pg_stat_replication "
        f"WHERE application_name = '{STANDBY}'"
    )
    return tuple(rows.split("|")) if rows else None
