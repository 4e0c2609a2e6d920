"""Offline checks of the Kubernetes and Argo manifests (run through scripts/validate-manifests.sh).

What is checked, without an API server:
  - every object of a built-in kind under deploy/kubernetes and deploy/argo against the
    Kubernetes OpenAPI schemas that kubernetes-validate ships, in strict mode (unknown fields
    are errors), for each version in KUBE_VERSIONS;
  - crd.yaml: a valid apiextensions.k8s.io/v1 CustomResourceDefinition (same tool), and the
    things the API server checks that a schema cannot (its name, one storage version, ...);
  - every PercoreApp sample against the CRD's openAPIV3Schema (jsonschema), with unknown fields
    rejected as `kubectl apply` (strict field validation) rejects them;
  - deliberately broken copies of a sample and of a DaemonSet, which must be rejected: a check
    that cannot fail proves nothing;
  - kustomization.yaml lists every manifest beside it and nothing missing;
  - the Argo executor plugin: its sidecar is a valid Container with what Argo requires, and the
    ConfigMap beside it says what plugin.yaml says;
  - the Argo Workflow sample: its entrypoint and every step's template exist, and, when
    ARGO_WORKFLOW_CRD names Argo's Workflow CRD file, its schema.

Not checked: CEL rules (x-kubernetes-validations), admission (Pod Security, quotas), and
anything that needs a running cluster.
"""

import argparse
import copy
import os
import re
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

CUSTOM_KINDS = {
    ("percore.dev/v1alpha1", "PercoreApp"),
    ("argoproj.io/v1alpha1", "Workflow"),
    ("argoproj.io/v1alpha1", "ExecutorPlugin"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
}

# The repository; set by main().
ROOT = Path(".")

# A host's deployment names (host/control/src/deploy_request.rs, valid_name).
DEPLOYMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what, detail=""):
        self.passed += 1
        print(f"ok    {what}" + (f"  ({detail})" if detail else ""))

    def fail(self, what, why):
        self.failed += 1
        print(f"FAIL  {what}: {why}")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def name_of(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name') or meta.get('generateName') or '?'}"


def is_custom(doc):
    return (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS


def kube_errors(doc, versions):
    """The strict-schema errors of a built-in object, for each version; empty when valid."""
    errors = []
    for v in versions:
        try:
            kv_utils.validate(doc, v, strict=True)
        except kv_utils.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            errors.append(f"k8s {v}: {where}: {e.message}")
        except kv_utils.SchemaNotFoundError as e:
            errors.append(f"k8s {v}: {e.message}")
    return errors


def kube_definition_errors(value, schema_file, version):
    """Errors of `value` against one of kubernetes-validate's strict schema files (for an object
    that is not a top-level resource, e.g. a Container)."""
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv_utils.schema_contents(f"{schema_dir}/{schema_file}", version)
    defs = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [
        f"k8s {version}: {'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in validator.iter_errors(value)
    ]


# --- CRD schema to JSON Schema ------------------------------------------------------------------


def structural_to_jsonschema(schema, root=False, counts=None):
    """A CRD's structural (OpenAPI v3) schema as a JSON Schema that rejects what the API server
    rejects with strict field validation: `nullable`, `x-kubernetes-int-or-string` and
    `x-kubernetes-preserve-unknown-fields` have their Kubernetes meaning, and an object with
    `properties` and nothing else allowed gets `additionalProperties: false`."""
    if counts is None:
        counts = {"cel": 0}
    if not isinstance(schema, dict):
        return schema
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if "x-kubernetes-validations" in schema:
        counts["cel"] += len(schema["x-kubernetes-validations"])
    if "properties" in s:
        s["properties"] = {
            k: structural_to_jsonschema(v, counts=counts) for k, v in s["properties"].items()
        }
    if isinstance(s.get("items"), dict):
        s["items"] = structural_to_jsonschema(s["items"], counts=counts)
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = structural_to_jsonschema(s["additionalProperties"], counts=counts)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            s[key] = [structural_to_jsonschema(x, counts=counts) for x in s[key]]
    if "not" in s:
        s["not"] = structural_to_jsonschema(s["not"], counts=counts)
    if root or schema.get("x-kubernetes-embedded-resource"):
        props = s.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in s
        and "additionalProperties" not in s
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        s["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        s = {"allOf": [s, {"anyOf": [{"type": "integer"}, {"type": "string"}]}]}
    if schema.get("nullable"):
        s = {"anyOf": [s, {"type": "null"}]}
    return s


def shown(path):
    """A path as printed: relative to the repository when it is inside it."""
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def check_crd(path, versions, report):
    """Validate crd.yaml; return the JSON Schema of a PercoreApp, or None."""
    rel = shown(path)
    if not path.exists():
        report.fail(
            str(rel),
            "missing: generate it with `percore-operator crd > deploy/kubernetes/crd.yaml`",
        )
        return None
    try:
        docs = load_docs(path)
    except yaml.YAMLError as e:
        report.fail(str(rel), f"not YAML or JSON: {e}")
        return None
    if len(docs) != 1:
        report.fail(str(rel), f"{len(docs)} documents; expected exactly one CustomResourceDefinition")
        return None
    crd = docs[0]
    if (crd.get("apiVersion"), crd.get("kind")) != (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
    ):
        report.fail(str(rel), f"is {crd.get('apiVersion')} {crd.get('kind')}")
        return None
    problems = kube_errors(crd, versions)
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    expected = {
        "spec.group": (spec.get("group"), "percore.dev"),
        "spec.names.kind": (names.get("kind"), "PercoreApp"),
        "spec.names.plural": (names.get("plural"), "percoreapps"),
        "spec.scope": (spec.get("scope"), "Namespaced"),
    }
    for field, (got, want) in expected.items():
        if got != want:
            problems.append(f"{field} is {got!r}, expected {want!r}")
    if crd.get("metadata", {}).get("name") != f"{names.get('plural')}.{spec.get('group')}":
        problems.append("metadata.name must be <plural>.<group> (the API server refuses others)")
    versions_ = spec.get("versions", [])
    storage = [v for v in versions_ if v.get("storage")]
    if len(storage) != 1:
        problems.append(f"{len(storage)} storage versions; the API server requires exactly one")
    v1alpha1 = next((v for v in versions_ if v.get("name") == "v1alpha1"), None)
    if v1alpha1 is None:
        problems.append("no version v1alpha1")
    else:
        if not v1alpha1.get("served"):
            problems.append("v1alpha1 is not served")
        if "status" not in (v1alpha1.get("subresources") or {}):
            problems.append("v1alpha1 has no status subresource (the operator patches /status)")
        if not v1alpha1.get("schema", {}).get("openAPIV3Schema"):
            problems.append("v1alpha1 has no openAPIV3Schema")
    if problems:
        for p in problems:
            report.fail(str(rel), p)
        return None
    counts = {"cel": 0}
    schema = structural_to_jsonschema(v1alpha1["schema"]["openAPIV3Schema"], root=True, counts=counts)
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        report.fail(str(rel), f"openAPIV3Schema is not a usable schema: {e.message}")
        return None
    note = f"CustomResourceDefinition/{crd['metadata']['name']}, k8s {' '.join(versions)}, strict"
    if counts["cel"]:
        note += f"; {counts['cel']} CEL rules not evaluated"
    report.ok(str(rel), note)
    return schema


def schema_errors(doc, schema):
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


# --- The checks ---------------------------------------------------------------------------------


def check_builtin_file(path, versions, report, skip=()):
    rel = path.relative_to(ROOT)
    try:
        docs = load_docs(path)
    except yaml.YAMLError as e:
        report.fail(str(rel), f"not YAML: {e}")
        return []
    checked, skipped, problems = [], [], []
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            problems.append("a document without apiVersion and kind")
            continue
        if is_custom(doc) or doc["kind"] in skip:
            skipped.append(name_of(doc))
            continue
        errors = kube_errors(doc, versions)
        problems += [f"{name_of(doc)}: {e}" for e in errors]
        checked.append(name_of(doc))
    if problems:
        for p in problems:
            report.fail(str(rel), p)
    else:
        detail = ", ".join(checked) if checked else "no built-in kinds"
        if checked:
            detail += f"; k8s {' '.join(versions)}, strict"
        if skipped:
            detail += f"; custom kinds checked below: {', '.join(skipped)}"
        report.ok(str(rel), detail)
    return docs


def check_kustomization(dir_, crd_override, report):
    path = dir_ / "kustomization.yaml"
    rel = path.relative_to(ROOT)
    if not path.exists():
        report.fail(str(rel), "missing")
        return
    k = load_docs(path)[0]
    listed = k.get("resources", [])
    # With PERCORE_CRD pointing elsewhere (a test run), that file stands in for crd.yaml.
    stand_in = {"crd.yaml"} if crd_override else set()
    problems = [
        f"lists {r}, which does not exist"
        for r in listed
        if not (dir_ / r).exists() and r not in stand_in
    ]
    present = sorted(p.name for p in dir_.glob("*.yaml") if p.name != "kustomization.yaml")
    problems += [f"{p} is not listed in resources" for p in present if p not in listed]
    if len(set(listed)) != len(listed):
        problems.append("a resource is listed twice")
    if problems:
        for p in problems:
            report.fail(str(rel), p)
    else:
        report.ok(str(rel), f"{len(listed)} resources, all present, none left out")


def check_percoreapps(files, schema, report):
    apps = []
    for path in files:
        for doc in load_docs(path):
            if (doc.get("apiVersion"), doc.get("kind")) != ("percore.dev/v1alpha1", "PercoreApp"):
                continue
            what = f"{path.relative_to(ROOT)} {name_of(doc)}"
            errors = schema_errors(doc, schema)
            ns, name = doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]
            deployment = f"{ns}-{name}".replace(".", "-")
            if not DEPLOYMENT_NAME.match(deployment):
                errors.append(f"`{deployment}` cannot name a deployment on a host")
            if errors:
                for e in errors:
                    report.fail(what, e)
            else:
                report.ok(what, f"CRD schema; deployment `{deployment}` on each host")
                apps.append(doc)
    if not apps:
        report.fail("deploy/kubernetes/samples", "no valid PercoreApp sample to check the schema with")
    return apps


def check_negative(app, schema, versions, report):
    """Broken copies must be rejected, or the checks above prove nothing."""
    cases = []
    broken = copy.deepcopy(app)
    del broken["spec"]["component"]
    cases.append(("PercoreApp without spec.component", broken))
    broken = copy.deepcopy(app)
    broken["spec"].setdefault("limits", {})["memoryMb"] = "lots"
    cases.append(("PercoreApp with limits.memoryMb: \"lots\"", broken))
    broken = copy.deepcopy(app)
    broken["spec"].setdefault("limits", {})["memMb"] = 64
    cases.append(("PercoreApp with an unknown field limits.memMb", broken))
    broken = copy.deepcopy(app)
    broken["spec"]["routes"] = [{"path": 7}]
    cases.append(("PercoreApp with a route path that is a number", broken))
    for label, doc in cases:
        errors = schema_errors(doc, schema)
        if errors:
            report.ok(f"negative: {label}", f"rejected: {errors[0]}")
        else:
            report.fail(f"negative: {label}", "accepted; the schema does not bite")

    hosts = next(
        (d for d in load_docs(ROOT / "deploy/kubernetes/hosts.yaml") if d.get("kind") == "DaemonSet"),
        None,
    )
    if hosts is None:
        report.fail("negative: DaemonSet", "no DaemonSet in hosts.yaml to break")
        return
    broken = copy.deepcopy(hosts)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    errors = kube_errors(broken, versions)
    label = "DaemonSet with a misspelt field (livenessprobe)"
    if len(errors) == len(versions):
        report.ok(f"negative: {label}", f"rejected: {errors[0]}")
    else:
        report.fail(f"negative: {label}", "accepted; strict mode does not bite")


def check_argo(report, versions):
    argo = ROOT / "deploy/argo"
    plugin_path = argo / "plugin.yaml"
    if plugin_path.exists():
        rel = plugin_path.relative_to(ROOT)
        plugin = load_docs(plugin_path)[0]
        problems = []
        if (plugin.get("apiVersion"), plugin.get("kind")) != ("argoproj.io/v1alpha1", "ExecutorPlugin"):
            problems.append("not an argoproj.io/v1alpha1 ExecutorPlugin")
        sidecar = plugin.get("spec", {}).get("sidecar", {})
        extra = set(sidecar) - {"automountServiceAccountToken", "container"}
        if extra:
            problems.append(f"unknown fields in spec.sidecar: {sorted(extra)}")
        container = sidecar.get("container", {})
        for v in versions:
            problems += kube_definition_errors(container, "container-v1.json", v)
        # Argo's own checks (pkg/plugins/spec/plugin_types.go, Sidecar.Validate).
        if not container.get("ports"):
            problems.append("Argo requires at least one port")
        if not container.get("resources", {}).get("requests"):
            problems.append("Argo requires resources.requests")
        if not container.get("resources", {}).get("limits"):
            problems.append("Argo requires resources.limits")
        if not container.get("securityContext"):
            problems.append("Argo requires a securityContext")
        if problems:
            for p in problems:
                report.fail(str(rel), p)
        else:
            report.ok(str(rel), f"ExecutorPlugin; sidecar is a valid Container (k8s {' '.join(versions)}, strict) with what Argo requires")

        cm_path = argo / f"{plugin['metadata']['name']}-executor-plugin-configmap.yaml"
        rel = cm_path.relative_to(ROOT)
        if not cm_path.exists():
            report.fail(str(rel), "missing: run `argo executor-plugin build deploy/argo`")
        else:
            cm = load_docs(cm_path)[0]
            problems = [f"ConfigMap: {e}" for e in kube_errors(cm, versions)]
            data = cm.get("data", {})
            labels = cm.get("metadata", {}).get("labels", {})
            if labels.get("workflows.argoproj.io/configmap-type") != "ExecutorPlugin":
                problems.append("label workflows.argoproj.io/configmap-type: ExecutorPlugin missing")
            if cm.get("metadata", {}).get("name") != f"{plugin['metadata']['name']}-executor-plugin":
                problems.append("name is not <plugin>-executor-plugin")
            if yaml.safe_load(data.get("sidecar.container", "")) != container:
                problems.append("sidecar.container differs from plugin.yaml: rebuild it")
            auto = "true" if sidecar.get("automountServiceAccountToken") else "false"
            if data.get("sidecar.automountServiceAccountToken") != auto:
                problems.append("sidecar.automountServiceAccountToken differs from plugin.yaml")
            if cm.get("metadata", {}).get("annotations", {}) != plugin["metadata"].get("annotations", {}):
                problems.append("annotations differ from plugin.yaml")
            if problems:
                for p in problems:
                    report.fail(str(rel), p)
            else:
                report.ok(str(rel), f"ConfigMap (k8s {' '.join(versions)}, strict); says what plugin.yaml says")

    # Argo's Workflow CRD (manifests/base/crds/full/argoproj.io_workflows.yaml of the Argo
    # release in use), when given; it is not kept in this repository.
    argo_schema = None
    if os.environ.get("ARGO_WORKFLOW_CRD"):
        crd = load_docs(os.environ["ARGO_WORKFLOW_CRD"])[0]
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        argo_schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"], root=True)
    for path in sorted(ROOT.glob("deploy/**/*.yaml")):
        for doc in load_docs(path):
            if (doc.get("apiVersion"), doc.get("kind")) != ("argoproj.io/v1alpha1", "Workflow"):
                continue
            what = f"{path.relative_to(ROOT)} {name_of(doc)}"
            spec = doc.get("spec", {})
            defined = {t.get("name") for t in spec.get("templates", [])}
            problems = []
            if spec.get("entrypoint") not in defined:
                problems.append(f"entrypoint {spec.get('entrypoint')!r} is not a template")
            for t in spec.get("templates", []):
                for group in t.get("steps", []) or []:
                    for step in group:
                        if step.get("template") not in defined:
                            problems.append(f"step {step.get('name')} uses undefined template {step.get('template')!r}")
                for task in (t.get("dag") or {}).get("tasks", []):
                    if task.get("template") not in defined:
                        problems.append(f"task {task.get('name')} uses undefined template {task.get('template')!r}")
            detail = "entrypoint and step templates defined"
            if argo_schema is not None:
                problems += schema_errors(doc, argo_schema)
                detail += "; Argo's Workflow CRD schema"
            else:
                detail += " (Argo's schema not checked: set ARGO_WORKFLOW_CRD)"
            if problems:
                for p in problems:
                    report.fail(what, p)
            else:
                report.ok(what, detail)


def main():
    global ROOT
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--crd", required=True)
    args = parser.parse_args()
    ROOT = Path(args.root).resolve()
    versions = os.environ.get("KUBE_VERSIONS", "1.33.0 1.37.0").split()
    known = kv_utils.all_versions()
    for v in versions:
        if kv_utils.major_minor(v) not in {kv_utils.major_minor(k) for k in known}:
            sys.exit(f"kubernetes-validate has no schemas for Kubernetes {v} (it has {known[0]} to {known[-1]})")
    report = Report()
    crd_path = Path(args.crd).resolve()
    kube_dir = ROOT / "deploy/kubernetes"

    schema = check_crd(crd_path, versions, report)
    files = sorted(
        p for p in list(kube_dir.rglob("*.yaml")) + list((ROOT / "deploy/argo").glob("*.yaml"))
        if p.resolve() != (kube_dir / "crd.yaml").resolve()
        and p.name not in ("plugin.yaml", "kustomization.yaml")
        and not p.name.endswith("-executor-plugin-configmap.yaml")
    )
    for path in files:
        check_builtin_file(path, versions, report)
    check_kustomization(kube_dir, crd_path != (kube_dir / "crd.yaml").resolve(), report)
    if schema is not None:
        apps = check_percoreapps(files, schema, report)
        if apps:
            check_negative(apps[0], schema, versions, report)
    else:
        report.fail("PercoreApp samples", "not checked: no usable CRD")
    check_argo(report, versions)

    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
