#!/usr/bin/python3
"""Validate custom resources against their CRD's openAPIV3Schema, strictly, offline.

usage: crd-validate.py SCHEMA DOC.json...
  SCHEMA: an openAPIV3Schema as JSON (KubeVirt's, extracted), or a YAML file of
  CustomResourceDefinitions (NFD's nfd-api-crds.yaml): the CRD whose kind and
  group/version match each document is used.
Prints `ok DOC` or `BAD DOC: error; error` per document; exit 1 if any is bad.

The openAPIV3Schema becomes a JSON Schema (Draft 7) as the API server reads it:
`nullable` allows null, `x-kubernetes-int-or-string` is integer or string,
`x-kubernetes-preserve-unknown-fields` keeps unknown fields, and every other
object that lists properties refuses unknown ones (the API server's strict
field validation, `kubectl apply --validate=strict`). CEL rules
(`x-kubernetes-validations`) are not evaluated. Debian's python3-yaml and
python3-jsonschema are all it needs.
"""
import json
import sys

import jsonschema
import yaml


def convert(s):
    if isinstance(s, list):
        return [convert(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    for k, v in s.items():
        if k.startswith("x-kubernetes-") or k == "nullable":
            continue
        if k in ("properties", "patternProperties", "definitions"):
            out[k] = {n: convert(x) for n, x in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = convert(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [convert(x) for x in v]
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") is True and "type" in out:
        t = out["type"]
        out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def schema_for(path, doc):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    for crd in yaml.safe_load_all(text):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        if spec["names"]["kind"] != doc.get("kind") or spec["group"] != group:
            continue
        for v in spec["versions"]:
            if v["name"] == version:
                return v["schema"]["openAPIV3Schema"]
    raise SystemExit(f"{path}: no CRD for {doc.get('apiVersion')} {doc.get('kind')}")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    bad = 0
    for p in sys.argv[2:]:
        with open(p, encoding="utf-8") as f:
            doc = json.load(f)
        schema = convert(schema_for(sys.argv[1], doc))
        v = jsonschema.Draft7Validator(schema)
        errs = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
        if errs:
            bad += 1
            msgs = ["%s: %s" % (".".join(str(x) for x in e.path) or "(top)", e.message) for e in errs]
            print(f"BAD {p}: " + "; ".join(msgs))
        else:
            print(f"ok {p}")
    sys.exit(1 if bad else 0)


main()
