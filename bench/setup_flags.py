"""Creates the benchmark's 200 flags in project `default` through the management API and prints the
production server key (from a key rotation). Usage: setup_flags.py <api base> <admin token>."""
import json
import sys
import urllib.request

API, TOKEN = sys.argv[1], sys.argv[2]


def call(method, path, body=None):
    request = urllib.request.Request(
        API + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def rollout(a, b):
    return {"rollout": {"weights": [{"variation": 0, "weight": a}, {"variation": 1, "weight": b}]}}


for i in range(200):
    key = f"flag-{i:03}"
    shape = i % 4
    if shape == 2:  # string flags
        variations = [{"value": "blue", "name": "blue"}, {"value": "green", "name": "green"}]
        kind = "string"
    else:
        variations = [{"value": True, "name": "on"}, {"value": False, "name": "off"}]
        kind = "boolean"
    call("POST", "/projects/default/flags",
         {"key": key, "name": key, "kind": kind, "variations": variations, "client_side": i % 2 == 0})
    if shape == 0:  # five rules and a rollout, like the engine's criterion benchmark
        config = {"on": True, "off_variation": 1,
                  "targets": [{"variation": 0, "values": [f"user-{n}" for n in range(10)]}],
                  "rules": [
                      {"id": "germany", "serve": {"variation": 0},
                       "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "AT", "CH"]}]},
                      {"id": "pro", "serve": {"variation": 0},
                       "clauses": [{"attribute": "plan", "op": "in", "values": ["enterprise"]},
                                   {"attribute": "age", "op": "gte", "values": [30]}]},
                      {"id": "staff", "serve": {"variation": 1},
                       "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@vexil.dev"]}]},
                      {"id": "new-app", "serve": rollout(50000, 50000),
                       "clauses": [{"attribute": "version", "op": "semver_gt", "values": ["2.9.0"]}]},
                      {"id": "testers", "serve": {"variation": 0},
                       "clauses": [{"attribute": "targetingKey", "op": "starts_with", "values": ["tester-"]}]}],
                  "fallthrough": rollout(25000, 75000)}
    elif shape == 1:  # one rule
        config = {"on": True, "off_variation": 1,
                  "rules": [{"id": "us", "serve": {"variation": 0},
                             "clauses": [{"attribute": "country", "op": "in", "values": ["US"]}]}],
                  "fallthrough": {"variation": 1}}
    elif shape == 2:  # a percentage rollout
        config = {"on": True, "off_variation": 1, "fallthrough": rollout(10000, 90000)}
    else:  # a plain switch
        config = {"on": i % 8 == 3, "off_variation": 1, "fallthrough": {"variation": 0}}
    call("PUT", f"/projects/default/flags/{key}/environments/production", config)

keys = call("POST", "/projects/default/environments/production/keys/rotate", {})
found = [v for v in json.dumps(keys).replace('"', " ").split() if v.startswith("vxs_")]
print(found[0])
