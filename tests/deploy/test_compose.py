"""The Docker Compose deployment, checked without a Docker daemon: the files it mounts exist,
ports don't collide, dependencies name real services, images are pinned, Prometheus scrapes the
ports the services expose, Grafana provisions what the dashboards use, and the Dockerfile is the
image the issue asked for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.grafana import DASHBOARDS, load

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
DOCKERFILE = (DOCKER / "Dockerfile").read_text()


def published_ports(service: dict) -> list[str]:
    return [str(p).rsplit(":", 1)[0] for p in service.get("ports", [])]


def container_port(service: dict, index: int = 0) -> int:
    return int(str(service["ports"][index]).rsplit(":", 1)[1])


def test_the_services_the_issue_lists_are_there():
    assert {"clickhouse", "migrate", "api", "nginx", "prometheus", "grafana", "loadgen"} <= set(SERVICES)


def test_every_mounted_file_exists_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).resolve().exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses volume {source}, not declared"


def test_published_ports_are_on_localhost_and_never_collide():
    ports = [p for service in SERVICES.values() for p in published_ports(service)]
    assert len(ports) == len(set(ports)), f"host ports collide: {ports}"
    assert all(p.startswith("127.0.0.1:") for p in ports), ports
    assert "127.0.0.1:18888" in published_ports(SERVICES["nginx"])
    assert {"127.0.0.1:18123", "127.0.0.1:19000"} <= set(published_ports(SERVICES["clickhouse"]))


def test_depends_on_names_real_services():
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on {dependency}, which is not a service"


def test_every_image_is_pinned():
    for name, service in SERVICES.items():
        image = service["image"]
        if "build" in service:
            assert not image.endswith(":latest"), name
            continue
        repository, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    pinned_bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert all(re.search(r":\d+\.\d+\.\d+", base) for base in pinned_bases), pinned_bases


def test_the_api_takes_the_client_address_from_nginx():
    """Behind nginx every request comes from nginx's address: the API trusts its X-Forwarded-For
    (country, visitor id, per-address rate limits), and only nginx reaches it."""
    assert SERVICES["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    assert "ports" not in SERVICES["api"]
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in (DOCKER / "nginx" / "nginx.conf").read_text()


def test_the_api_waits_for_the_one_shot_migration():
    assert SERVICES["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert "migrate" in SERVICES["migrate"]["command"]
    assert SERVICES["api"]["environment"]["CLICKHOUSE_URL"].startswith("http://")
    assert "WEB_CONCURRENCY" in SERVICES["api"]["environment"]
    assert "ports" not in SERVICES["api"], "replicas are reached through nginx; a published port blocks --scale"


def scrape_targets(job: str) -> list[tuple[str, int]]:
    config = next(c for c in PROMETHEUS["scrape_configs"] if c["job_name"] == job)
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for s in config.get("static_configs", []) for t in s["targets"]]
    targets += [(name, sd["port"]) for sd in config.get("dns_sd_configs", []) for name in sd["names"]]
    return targets


def test_prometheus_scrapes_every_api_replica_on_the_port_it_listens_on():
    [(host, port)] = scrape_targets("analytics-api")
    assert host == "api"
    assert str(port) in [str(p) for p in SERVICES["api"]["expose"]]
    assert f"EXPOSE {port}" in DOCKERFILE and f"PORT={port}" in DOCKERFILE
    nginx = (DOCKER / "nginx" / "nginx.conf").read_text()
    assert f"server api:{port}" in nginx


def test_prometheus_scrapes_clickhouse_on_its_prometheus_port():
    [(host, port)] = scrape_targets("clickhouse")
    assert host == "clickhouse"
    endpoint = (DOCKER / "clickhouse" / "prometheus.xml").read_text()
    assert f"<port>{port}</port>" in endpoint
    assert any(v.endswith("config.d/prometheus.xml:ro") for v in SERVICES["clickhouse"]["volumes"])


def test_grafana_provisions_the_data_sources_and_the_dashboards_it_mounts():
    provisioning = ROOT / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())["datasources"]
    provided = {(s["type"], s["uid"]) for s in sources}
    used = {(t["datasource"]["type"], t["datasource"]["uid"])
            for path in DASHBOARDS for panel in load(path)["panels"] for t in panel["targets"]}
    assert used <= provided, used - provided
    plugins = SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert plugins.startswith("grafana-clickhouse-datasource ")
    [provider] = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"]}
    assert (DOCKER / mounts[provider["options"]["path"]]).resolve() == ROOT / "grafana" / "dashboards"
    clickhouse = next(s for s in sources if s["type"] == "grafana-clickhouse-datasource")
    assert clickhouse["jsonData"]["host"] == "clickhouse" and clickhouse["jsonData"]["port"] == 9000


@pytest.mark.parametrize("needle", [
    "AS build",                      # multi-stage
    "-slim-",                        # slim base
    "USER api",                      # non-root
    "HEALTHCHECK",                   # health check on /healthz
    "/healthz",
    "COPY clickhouse /src/clickhouse",  # the SQL, installed as the package data of server.sql
    'CMD ["analytics-api", "serve"]',   # the installed package's command, no PYTHONPATH
])
def test_the_dockerfile(needle):
    assert needle in DOCKERFILE


def test_the_image_installs_no_dev_dependencies_and_copies_what_exists():
    installs = [line for line in DOCKERFILE.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all("[" not in line and " -e " not in line for line in installs), installs
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repository"


def test_the_wheel_carries_the_sql_and_the_page(tmp_path):
    """What the image installs: a wheel of the project, built as pip builds it, holding every
    migration, report query and page file as package data (found with importlib.resources)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                ".*_cache", ".hypothesis", "var"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("analytics_api-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in (ROOT / "clickhouse").rglob("*.sql"):
        assert f"server/sql/{sql.relative_to(ROOT / 'clickhouse')}" in names, f"{sql.name} is not in the wheel"
    for page in ("index.html", "app.js", "style.css", "t.js", "vendor/uPlot.iife.min.js"):
        assert f"server/web/{page}" in names
