"""The Compose profile `cluster` (docker/docker-compose.yaml, docker/clickhouse/cluster/): 3 Keeper
nodes and 2 shards x 2 replicas, checked without a daemon: names, macros, raft ids, shards x
replicas and the Keeper ensemble agree across every file; Debian's docker-compose validates the
whole file and promtool the Prometheus configuration, when they are installed (make test
installs them from Debian's packages)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
CONFIGS = DOCKER / "clickhouse" / "cluster"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
CLUSTER = ET.parse(CONFIGS / "cluster.xml").getroot()


def in_profile(name: str) -> list[str]:
    return sorted(n for n, s in SERVICES.items() if name in s.get("profiles", []))


def mounted(service: str, target_suffix: str) -> Path:
    for volume in SERVICES[service]["volumes"]:
        source, target = volume.split(":")[:2]
        if target.endswith(target_suffix):
            return (DOCKER / source).resolve()
    raise AssertionError(f"{service} mounts nothing at …{target_suffix}")


def test_the_profile_has_three_keepers_and_two_shards_of_two_replicas():
    assert in_profile("cluster") == ["ch-s1r1", "ch-s1r2", "ch-s2r1", "ch-s2r2", "keeper1", "keeper2", "keeper3"]
    shards = CLUSTER.findall("remote_servers/analytics/shard")
    assert len(shards) == 2
    hosts = [[replica.findtext("host") for replica in shard.findall("replica")] for shard in shards]
    assert hosts == [["ch-s1r1", "ch-s1r2"], ["ch-s2r1", "ch-s2r2"]]
    assert all(shard.findtext("internal_replication") == "true" for shard in shards)  # replicated tables copy
    single = SERVICES["clickhouse"]["image"]
    assert {SERVICES[n]["image"] for n in in_profile("cluster") if n.startswith("ch-")} == {single}
    assert {SERVICES[n]["image"] for n in in_profile("cluster") if n.startswith("keeper")} == {
        single.replace("clickhouse-server", "clickhouse-keeper")}


def test_each_node_mounts_the_cluster_and_macros_that_name_its_own_shard_and_replica():
    seen = set()
    for index, shard in enumerate(CLUSTER.findall("remote_servers/analytics/shard"), start=1):
        for replica in shard.findall("replica"):
            node = replica.findtext("host")
            assert mounted(node, "config.d/cluster.xml") == CONFIGS / "cluster.xml"
            macros = ET.parse(mounted(node, "config.d/macros.xml")).getroot().find("macros")
            assert macros is not None
            assert macros.findtext("shard") == str(index), node
            assert macros.findtext("replica") == node
            assert macros.findtext("cluster") == "analytics"
            seen.add((macros.findtext("shard"), macros.findtext("replica")))
            assert replica.findtext("port") == "9000"
    assert len(seen) == 4  # macros unique per node


def test_keeper_ids_and_the_raft_ensemble_agree_everywhere():
    ensemble = {(n.findtext("host"), n.findtext("port")) for n in CLUSTER.findall("zookeeper/node")}
    raft_configurations = []
    for number in (1, 2, 3):
        name = f"keeper{number}"
        config = ET.parse(mounted(name, "keeper_config.d/keeper.xml")).getroot().find("keeper_server")
        assert config is not None
        assert config.findtext("server_id") == str(number)
        assert (name, config.findtext("tcp_port")) in ensemble
        servers = [(s.findtext("id"), s.findtext("hostname"), s.findtext("port"))
                   for s in config.findall("raft_configuration/server")]
        raft_configurations.append(servers)
    assert raft_configurations[0] == raft_configurations[1] == raft_configurations[2]
    assert [(i, host) for i, host, _ in raft_configurations[0]] == [("1", "keeper1"), ("2", "keeper2"), ("3", "keeper3")]
    assert len(ensemble) == 3


def test_prometheus_scrapes_every_cluster_node():
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert {f"{node}:9363" for node in in_profile("cluster") if node.startswith("ch-")} <= targets


def test_docker_compose_validates_the_file_with_the_cluster_profile(tmp_path):
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (Debian's package) is not installed")
    text = (DOCKER / "docker-compose.yaml").read_text()
    copy = DOCKER / f".compose-check-{tmp_path.name}.yaml"  # beside the original: relative paths resolve the same
    copy.write_text("\n".join(line for line in text.splitlines() if not line.startswith("name:")))  # 1.29 predates it
    try:
        for profile in ([], ["--profile", "cluster"]):
            command = ["docker-compose", "-f", str(copy), "-p", "analytics-api", *profile, "config", "-q"]
            result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                    env={"PATH": "/usr/bin:/bin", "READ_TOKEN": "a-read-token"})
            assert result.returncode == 0, result.stderr
            # The API binds 0.0.0.0 in its container: the deployment does not start without a read token.
            unset = subprocess.run(command, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
            assert unset.returncode != 0 and "READ_TOKEN" in unset.stderr, unset.stderr
    finally:
        copy.unlink()


def test_promtool_accepts_the_prometheus_configuration():
    if not shutil.which("promtool"):
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    result = subprocess.run(["promtool", "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
