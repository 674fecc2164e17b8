"""Every configuration the benchmark can run, and which hand loop each is compared with."""

from __future__ import annotations

import dataclasses
import fnmatch

GUARANTEE_SHORT = {"NONE": "NONE", "AT_LEAST_ONCE": "ALO", "EXACTLY_ONCE": "EOS"}


@dataclasses.dataclass(frozen=True)
class Config:
    """One job to measure. ``job`` is ``source`` (read only) or ``kafka`` (Kafka -> Kafka);
    ``guarantee`` is NONE / AT_LEAST_ONCE / EXACTLY_ONCE (``-`` for source only);
    ``records_cap`` bounds the records of slow peers; ``env`` names the virtual environment
    the runner needs (None: the project's own)."""

    framework: str
    job: str
    guarantee: str
    keyed: bool = False
    parallelism: int = 1
    records_cap: int | None = None
    env: str | None = None
    # Hand Kafka -> Kafka loops write each output record with its input record's timestamp,
    # as streamplug's and Flink's sinks do (the element's event time); False lets the
    # producer stamp the current time: less work than the frameworks do, kept as a reference.
    copies_timestamps: bool = True
    # Hand loops find their input's extent as the bounded jobs do (its partitions and their
    # first and end offsets, asked of the broker); a ``told`` loop is given the partition
    # and record counts instead: less work, the source-only loop's noise gauge.
    told: bool = False
    # ``jemalloc``: the runner's process starts with jemalloc preloaded instead of glibc's
    # malloc (see docs/source.md, Performance); only where the library is installed.
    allocator: str = "glibc"

    @property
    def name(self) -> str:
        parts = [
            self.framework,
            "source" if self.job == "source" else GUARANTEE_SHORT[self.guarantee],
        ]
        parts.append("keyed" if self.keyed else "value")
        if self.framework in ("streamplug", "flink"):
            parts.append(f"p{self.parallelism}")
        if self.framework == "hand" and self.job == "kafka" and not self.copies_timestamps:
            parts.append("ts-now")
        if self.told:
            parts.append("told")
        if self.allocator != "glibc":
            parts.append(self.allocator)
        return "/".join(parts)

    @property
    def baseline(self) -> str:
        """The hand loop doing the same work with the same guarantee and record shape."""
        shape = "keyed" if self.keyed else "value"
        allocator = "" if self.allocator == "glibc" else f"/{self.allocator}"
        if self.job == "source":
            return f"hand/source/{shape}{allocator}"
        return f"hand/{GUARANTEE_SHORT[self.guarantee]}/{shape}{allocator}"

    @property
    def bounded(self) -> bool:
        """Reads the input to its end by itself; the peers that only stream stop after
        ``records`` instead, so their output may hold a little more."""
        return self.framework in ("hand", "streamplug", "flink", "bytewax")

    def records(self, requested: int) -> int:
        if self.records_cap is None or self.framework == "bytewax":
            return requested
        return min(requested, self.records_cap)


def _all() -> list[Config]:
    out: list[Config] = []
    for keyed in (False, True):
        out.append(Config("hand", "source", "-", keyed))
        out.append(Config("hand", "source", "-", keyed, told=True))
        for g in ("NONE", "AT_LEAST_ONCE", "EXACTLY_ONCE"):
            out.append(Config("hand", "kafka", g, keyed))
            out.append(Config("hand", "kafka", g, keyed, copies_timestamps=False))
    out.append(Config("streamplug", "source", "-", False, 1))
    out.append(Config("streamplug", "source", "-", True, 1))
    out.append(Config("streamplug", "source", "-", False, 2))
    # The reading side with jemalloc instead of glibc's malloc, the loop and the job alike:
    # what the allocator costs both (docs/source.md, Performance).
    out.append(Config("hand", "source", "-", allocator="jemalloc"))
    out.append(Config("streamplug", "source", "-", False, 1, allocator="jemalloc"))
    for g in ("NONE", "AT_LEAST_ONCE", "EXACTLY_ONCE"):
        for keyed in (False, True):
            for p in (1, 2):
                out.append(Config("streamplug", "kafka", g, keyed, p))
    out += [
        Config("flink", "kafka", "EXACTLY_ONCE", False, 1, env="maven"),
        Config("flink", "kafka", "EXACTLY_ONCE", True, 1, env="maven"),
        Config("quix", "kafka", "AT_LEAST_ONCE", records_cap=300_000, env="quix"),
        Config("quix", "kafka", "EXACTLY_ONCE", records_cap=300_000, env="quix"),
        Config("bytewax", "kafka", "NONE", env="bytewax"),
        Config("arroyo", "kafka", "AT_LEAST_ONCE", records_cap=100_000, env="arroyo"),
        Config("faust", "kafka", "AT_LEAST_ONCE", records_cap=20_000, env="faust"),
        # Faust's exactly_once is kept in to show the output check at work: its sends
        # bypass the transaction, so its output carries no transaction markers.
        Config("faust", "kafka", "EXACTLY_ONCE", records_cap=20_000, env="faust"),
    ]
    return out


THROUGHPUT = _all()
PEERS = ("quix", "bytewax", "arroyo", "faust", "flink")

#: End-to-end latency at a fixed input rate: value-only, parallelism 1.
LATENCY = [
    Config("hand", "kafka", "AT_LEAST_ONCE"),
    Config("hand", "kafka", "EXACTLY_ONCE"),
    Config("streamplug", "kafka", "AT_LEAST_ONCE"),
    Config("streamplug", "kafka", "EXACTLY_ONCE"),
    Config("flink", "kafka", "AT_LEAST_ONCE", env="maven"),
    Config("flink", "kafka", "EXACTLY_ONCE", env="maven"),
]


#: Issue 12's targets: records/s of the job over its hand loop's, at parallelism 1, and for
#: source only its CPU per record within 10% of the loop's: (job, ratio, CPU ratio).
TARGETS = [
    ("streamplug/source/value/p1", 0.9, 0.9),
    ("streamplug/ALO/value/p1", 0.9, None),
    ("streamplug/EOS/value/p1", 0.8, None),
    ("streamplug/ALO/keyed/p1", 0.8, None),
    ("streamplug/EOS/keyed/p1", 0.8, None),
]


def gauge_of(config: Config) -> Config | None:
    """A hand loop's twin doing strictly less work: the ``ts-now`` twin of a Kafka -> Kafka
    loop (the producer stamps the time), the ``told`` twin of a source-only loop (given its
    input's extent instead of asking for it). Over many rounds a twin must come out at 1
    or a little above; where it does not, the rounds measured the machine more than the
    loops: the run's noise gauge."""
    if (
        config.framework != "hand"
        or config.told
        or not config.copies_timestamps
        or config.allocator != "glibc"
    ):
        return None
    if config.job == "source":
        return dataclasses.replace(config, told=True)
    return dataclasses.replace(config, copies_timestamps=False)


def target_jobs(selected: set[str]) -> list[Config]:
    """One round of the targets phase: each target's job among ``selected``, the hand loop
    it is compared with and that loop's noise gauge, in THROUGHPUT's order."""
    names = {name for name, _ratio, _cpu in TARGETS if name in selected}
    jobs = [c for c in THROUGHPUT if c.name in names]
    names |= {c.baseline for c in jobs}
    for c in THROUGHPUT:
        gauge = gauge_of(c) if c.name in names else None
        if gauge is not None:
            names.add(gauge.name)
    return [c for c in THROUGHPUT if c.name in names]


def run_order(configs: list[Config], round_no: int = 1) -> list[Config]:
    """The order of round ``round_no``: each job beside the hand loop it is compared with,
    so that a pair runs seconds apart rather than minutes (a 2-core machine shared with the
    broker drifts within a round); jobs without their hand loop in ``configs`` keep their
    place after the pairs. Even rounds run in the reverse order: a loop always first in its
    group always followed the previous round's last and heaviest job (Kafka -> Kafka
    exactly-once, keyed) while its job never did, and a twin doing strictly less work than
    its loop came out 1.09 over 20 such rounds (2026-12-07) where ~1.01 was its due. The
    tables keep ``configs``' order."""
    names = {c.name for c in configs}

    def follows(config: Config) -> bool:
        return config.framework != "hand" and config.baseline in names

    ordered: list[Config] = []
    for config in configs:
        if follows(config):
            continue
        ordered.append(config)
        if config.framework == "hand":
            ordered += [c for c in configs if follows(c) and c.baseline == config.name]
    return ordered if round_no % 2 else ordered[::-1]


def by_name(name: str) -> Config:
    for config in THROUGHPUT:
        if config.name == name:
            return config
    raise KeyError(name)


def select(configs: list[Config], only: str | None, skip_peers: bool) -> list[Config]:
    """``only``: comma-separated shell patterns over the names (``streamplug/*``,
    ``*/EOS/*``, ``hand/ALO/value``); ``skip_peers`` drops Quix, Bytewax, Arroyo, Faust and
    Flink."""
    chosen = [c for c in configs if not (skip_peers and c.framework in PEERS)]
    if only:
        patterns = [p.strip() for p in only.split(",") if p.strip()]
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    return chosen
