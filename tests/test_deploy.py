"""
The deployment files, checked offline: the Kubernetes manifests against the
Kubernetes schemas bundled with kubernetes-validate (strict: no unknown
fields), the configuration files they carry against sandboxd's own loaders,
and the Nomad job files parsed as HCL.  Nothing here talks to a cluster.
"""

import glob
import os

import hcl2
import kubernetes_validate
import yaml
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.config import parse_config
from sandboxd.router.config import parse_router_config

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES = os.path.join(_ROOT, "deploy", "kubernetes")
NOMAD = os.path.join(_ROOT, "deploy", "nomad")
#: The Kubernetes version the manifests are checked against.
VERSION = "1.30.0"


def documents():
    for path in sorted(glob.glob(os.path.join(KUBERNETES, "*.yaml"))):
        with open(path) as f:
            for document in yaml.safe_load_all(f):
                if document:
                    yield os.path.basename(path), document


class KubernetesTests(SynchronousTestCase):
    """deploy/kubernetes/ is valid and complete."""

    def test_schemas(self):
        """Every manifest passes strict validation against the bundled schemas."""
        kinds = []
        for name, document in documents():
            try:
                kubernetes_validate.validate(document, VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                self.fail(f"{name}: {document['kind']}: {e.message} at {list(e.path)}")
            kinds.append(document["kind"])
        self.assertEqual(sorted(kinds), ["ConfigMap", "DaemonSet", "Deployment", "Namespace",
                                         "Service", "Service", "StatefulSet"])

    def test_invalid_is_caught(self):
        """The validator is not a rubber stamp: an unknown field fails it."""
        _, daemonset = next((n, d) for n, d in documents() if d["kind"] == "DaemonSet")
        daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(daemonset, VERSION, strict=True)

    def test_configs_load(self):
        """
        The ConfigMap's sandboxd.toml, with the init container's
        substitutions made, loads as a cluster node's configuration; its
        router.toml loads as the router's.
        """
        config_map = next(d for _, d in documents() if d["kind"] == "ConfigMap")
        text = (config_map["data"]["sandboxd.toml"].replace("@NODE_ID@", "0123456789ab")
                .replace("@HOST_IP@", "10.0.0.5"))
        config = parse_config(text, "sandboxd.toml", environ={})
        self.assertEqual((config.server.node_id, config.cluster.advertise, len(config.cluster.etcd)),
                         ("0123456789ab", "http://10.0.0.5:7522", 3))
        router = parse_router_config(config_map["data"]["router.toml"])
        self.assertEqual(router.etcd, config.cluster.etcd)

    def test_daemonset_shape(self):
        """The node runs privileged on the host network with the host's dockerd."""
        daemonset = next(d for _, d in documents() if d["kind"] == "DaemonSet")
        spec = daemonset["spec"]["template"]["spec"]
        self.assertTrue(spec["hostNetwork"])
        self.assertTrue(spec["containers"][0]["securityContext"]["privileged"])
        self.assertIn("/var/run/docker.sock", [v["hostPath"]["path"] for v in spec["volumes"]
                                              if "hostPath" in v])


class NomadTests(SynchronousTestCase):
    """deploy/nomad/ parses and carries loadable configurations."""

    def test_jobs(self):
        """Each file is one job; the node job is a system job, the routers a service."""
        jobs = {}
        for path in sorted(glob.glob(os.path.join(NOMAD, "*.nomad.hcl"))):
            with open(path) as f:
                parsed = hcl2.load(f)
            (job,) = parsed["job"] if isinstance(parsed["job"], list) else [parsed["job"]]
            ((name, body),) = job.items()
            jobs[name.strip('"')] = body
        self.assertEqual(sorted(jobs), ["sandboxd", "sandboxd-router"])
        types = tuple(jobs[name]["type"].strip('"') for name in ("sandboxd", "sandboxd-router"))
        self.assertEqual(types, ("system", "service"))
