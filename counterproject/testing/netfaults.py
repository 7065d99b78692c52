"""
A fault harness (#24): PostgreSQL and Redis each in a network namespace of
their own, reached over veth links whose faults switch on and off while
traffic runs.

The app servers and test clients stay in the root namespace and reach a host
at ``host.address``, its end of its link to the root namespace. Each link is
a /30 of 10.203.0.0/16, a range only this harness uses; no namespace has a
default route, so nothing it sends leaves the machine. A primary and its
standby get a link of their own, so that cutting replication is a fault on
that link alone.

Everything is named ``cp`` plus a random suffix of the harness's own, and
``close()`` (or the end of the ``with`` block, or the interpreter's exit)
kills the processes in its namespaces and removes every namespace, link,
queueing discipline and nftables table bearing that suffix, and nothing else.
Everything here needs root: ``available()`` says whether it can run.
"""

import atexit
import fcntl
import ipaddress
import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import port_for

from .servers import LoggedTCPExecutor, PostgresCluster, RedisServer

logger = logging.getLogger(__name__)

PREFIX = "cp"
NETWORK = ipaddress.ip_network("10.203.0.0/16")
# Held while a link's subnet is chosen and its root end addressed: parallel
# harnesses share the root namespace's routes.
LOCK = Path("/run/lock/counters-netfaults.lock")

# Trust on loopback and on the harness's links, for sessions and replication;
# given with hba_file, since initdb writes pg_hba.conf when the server starts.
HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
host all all 10.203.0.0/16 trust
local replication all trust
host replication all 10.203.0.0/16 trust
"""

# Added, deleted and made again in one transaction: a second call replaces
# the first.
LOSS = """\
table inet {0}
delete table inet {0}
table inet {0} {{
    chain output {{
        type filter hook output priority 0
        {1}
    }}
}}
"""


def available() -> tuple[bool, str]:
    """Return whether the harness can run here, and if not, why not."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    for tool in ("ip", "tc", "nft", "setpriv"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed"
    probe = f"{PREFIX}probe-{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
        _run("nft", "list", "tables", netns=probe)
    except RuntimeError as exc:
        return False, str(exc)
    finally:
        _sweep(probe.split("-")[1])
    return True, ""


def _run(*command: str, netns: str | None = None, input: str | None = None) -> str:
    """Run ``command`` (in ``netns``); return its output, raise if it fails."""
    if netns is not None:
        command = ("ip", "netns", "exec", netns, *command)
    result = subprocess.run(
        command, input=input, capture_output=True, text=True, timeout=30
    )
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def _json(*command: str):
    return json.loads(_run(*command) or "[]")


@dataclass(eq=False)
class Host:
    """A network namespace (``None``: the root one) and its link to the root."""

    netns: str | None
    link: "Link | None" = None

    @property
    def address(self) -> str:
        """Return this host's address on its link to the root namespace."""
        return self.link.end(self).address

    def pids(self) -> list[int]:
        """Return the processes running in this namespace."""
        return [int(pid) for pid in _run("ip", "netns", "pids", self.netns).split()]


@dataclass(eq=False)
class End:
    """One host's device on a link, and the faults the harness put on it."""

    host: Host
    device: str
    address: str
    shaped: bool = False  # a queueing discipline of the harness is on
    lossy: bool = False  # its nftables table (named as the device) exists

    def tc(self, action: str, *qdisc: str) -> None:
        device = ("dev", self.device, "root")
        _run("tc", "qdisc", action, *device, *qdisc, netns=self.host.netns)


@dataclass(eq=False)
class Link:
    """A veth pair between two hosts whose faults switch on and off."""

    ends: tuple[End, End]

    def end(self, host: Host) -> End:
        """Return ``host``'s end of this link."""
        return next(end for end in self.ends if end.host is host)

    def address(self, host: Host) -> str:
        """Return ``host``'s address on this link."""
        return self.end(host).address

    def partition(self) -> None:
        """Drop everything either end sends: no packet crosses the link."""
        for end in self.ends:
            self._queue(end, "pfifo", "limit", "0")

    def drop_one_way(self, sender: Host) -> None:
        """Drop everything ``sender`` sends over the link; the other way works."""
        self._queue(self.end(sender), "pfifo", "limit", "0")

    def slow(self, rate: str = "2mbit") -> None:
        """Limit each direction to ``rate`` (tc's units: ``2mbit``, ``500kbit``)."""
        for end in self.ends:
            # A burst well above the MTU and the timer's tick; packets wait
            # up to the latency in the queue, then are dropped.
            self._queue(end, "tbf", "rate", rate, "burst", "32kb", "latency", "400ms")

    def lossy(self, percent: int = 5) -> None:
        """Drop ``percent`` of the packets each end sends, at random."""
        if not 0 <= percent <= 100:
            raise ValueError(f"The loss must be a percentage, not {percent!r}.")
        # nft takes no 100 in "mod 100 < …": the whole loss needs no draw.
        draw = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        for end in self.ends:
            rule = f'oifname "{end.device}" {draw}drop'
            script = LOSS.format(end.device, rule)
            _run("nft", "-f", "-", input=script, netns=end.host.netns)
            end.lossy = True

    def heal(self) -> None:
        """Remove every fault of this link."""
        for end in self.ends:
            if end.shaped:
                end.tc("del")
                end.shaped = False
            if end.lossy:
                _run("nft", "delete", "table", "inet", end.device, netns=end.host.netns)
                end.lossy = False

    def _queue(self, end: End, *qdisc: str) -> None:
        end.tc("replace", *qdisc)
        end.shaped = True


class Network:
    """Hosts and links of the harness's own, removed again by ``close()``."""

    def __init__(self) -> None:
        self.suffix = secrets.token_hex(3)
        self.root = Host(None)
        self.links: list[Link] = []
        self._subnets: set = set()
        self._servers: list = []
        atexit.register(self.close)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def host(self, name: str) -> Host:
        """Make the namespace ``cp<name>-<suffix>``, linked to the root one."""
        host = Host(f"{PREFIX}{name}-{self.suffix}")
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "set", "lo", "up", netns=host.netns)
        host.link = self.link(self.root, host)
        return host

    def link(self, a: Host, b: Host) -> Link:
        """Link ``a`` and ``b`` with a veth pair of a /30 of their own."""
        devices = [f"{PREFIX}{self.suffix}{len(self.links)}{side}" for side in "ab"]
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = self._free_subnet()
            _run(
                "ip", "link", "add", devices[0], *_netns_option(a),
                "type", "veth", "peer", "name", devices[1], *_netns_option(b),
            )  # fmt: skip
            ends = []
            for host, device, address in zip(
                (a, b), devices, subnet.hosts(), strict=True
            ):
                ends.append(_address(End(host, device, str(address))))
        link = Link(tuple(ends))
        self.links.append(link)
        return link

    def _free_subnet(self) -> ipaddress.IPv4Network:
        taken = self._subnets | {
            ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
            for interface in _json("ip", "-j", "-4", "addr", "show")
            for info in interface.get("addr_info", [])
        }
        while True:
            index = random.randrange(NETWORK.num_addresses // 4)
            subnet = ipaddress.ip_network(f"{NETWORK.network_address + 4 * index}/30")
            if subnet not in taken:
                self._subnets.add(subnet)
                return subnet

    def postgres(self, host: Host, **options) -> PostgresCluster:
        """
        Return a cluster, not yet started, that runs in ``host`` and is
        reached at ``host.address``; ``options`` go to ``PostgresCluster``.
        """
        cluster = PostgresCluster(host=host.address, netns=host.netns, **options)
        self._servers.append(cluster)
        hba = cluster.dir / "pg_hba.conf"
        hba.write_text(HBA)
        # Every address in the namespace is one of the harness's links.
        ours = {"listen_addresses": "*", "hba_file": str(hba)}
        cluster.settings = {**ours, **cluster.settings}
        return cluster

    def standby(
        self, primary: PostgresCluster, host: Host, link: Link, **options
    ) -> PostgresCluster:
        """
        Return a streaming standby of the running ``primary``, not yet
        started, in ``host``, that replicates over ``link`` alone.
        """
        cluster = self.postgres(host, **options)
        # pg_basebackup runs here, over the primary's link to the root
        # namespace; the standby then streams over the direct link: the
        # command line wins over the primary_conninfo that -R writes.
        cluster.clone(primary)
        source = next(end.address for end in link.ends if end.host is not host)
        conninfo = f"host={source} port={primary.port} user={primary.user}"
        cluster.settings["primary_conninfo"] = f"{conninfo} connect_timeout=2"
        return cluster

    def redis(self, host: Host) -> "NamespacedRedis":
        """Return a Redis, not yet started, in ``host``, at ``host.address``."""
        server = NamespacedRedis(host)
        self._servers.append(server)
        return server

    def close(self) -> None:
        """Stop the servers; remove every namespace, link and rule of this harness."""
        atexit.unregister(self.close)
        for server in reversed(self._servers):
            try:
                server.destroy()
            except Exception:  # noqa: BLE001 - the namespaces go regardless
                logger.exception("Could not stop %s", server)
        self._servers.clear()
        _sweep(self.suffix)


def _address(end: End) -> End:
    """Give ``end`` its address and bring its device up."""
    cidr = f"{end.address}/30"
    _run("ip", "addr", "add", cidr, "dev", end.device, netns=end.host.netns)
    _run("ip", "link", "set", end.device, "up", netns=end.host.netns)
    return end


def _netns_option(host: Host) -> list[str]:
    return [] if host.netns is None else ["netns", host.netns]


def _sweep(suffix: str) -> None:
    """
    Kill, then remove, everything named ``cp…`` with ``suffix``.

    Each removal is tried even when another fails; the first failure is
    raised at the end.
    """
    namespaces = [
        item["name"]
        for item in _json("ip", "-j", "netns", "list")
        if item["name"].startswith(PREFIX) and item["name"].endswith(f"-{suffix}")
    ]
    ours = f"{PREFIX}{suffix}"
    tables = [
        item["table"]
        for item in _json("nft", "-j", "list", "tables")["nftables"]
        if item.get("table", {}).get("name", "").startswith(ours)
    ]
    devices = [
        item["ifname"]
        for item in _json("ip", "-j", "link", "show")
        if item["ifname"].startswith(ours)
    ]
    # A root end goes at once, with its peer; a namespace's devices go with
    # it, but the kernel removes them only later.
    steps = [(_kill_all, netns) for netns in namespaces]
    steps += [(_run, "nft", "delete", "table", t["family"], t["name"]) for t in tables]
    steps += [(_run, "ip", "link", "delete", device) for device in devices]
    steps += [(_run, "ip", "netns", "delete", netns) for netns in namespaces]
    failures = []
    for function, *args in steps:
        try:
            function(*args)
        except RuntimeError as exc:
            logger.error("%s", exc)
            failures.append(exc)
    if failures:
        raise failures[0]


def _kill_all(netns: str, seconds: float = 10) -> None:
    """Kill every process in ``netns``: deleting it would leave them running."""
    deadline = time.monotonic() + seconds
    while pids := _run("ip", "netns", "pids", netns).split():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Processes {pids} in {netns} did not end.")
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


class NamespacedRedis(RedisServer):
    """
    A throwaway Redis in a host's namespace, reached at its address.

    RedisServer's methods with an executor of its own: pytest_redis's takes
    no command to run it under.
    """

    def __init__(self, host: Host) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = Path(tempfile.mkdtemp(prefix="counters-redis-"))
        self.port = port_for.select_random()
        self.url = f"redis://{host.address}:{self.port}/0"
        command = [
            executable, "--port", str(self.port), "--bind", host.address,
            # No other client can reach the namespace: no password needed.
            "--protected-mode", "no", "--save", "", "--dir", str(self.dir),
        ]  # fmt: skip
        self._executor = LoggedTCPExecutor(
            ["ip", "netns", "exec", host.netns, *command],
            log=self.dir / "redis.log",
            host=host.address,
            port=self.port,
            timeout=30,
        )
