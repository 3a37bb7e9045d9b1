#!/usr/bin/env python3
"""Builds tests/contracts/jira-v2.json, the Jira contract scripts/prism.sh mocks.

Inputs (Apache-2.0, read from <repo>/../shared/specs or --specs DIR):
  jira-v2-stub.json                 trimmed Jira REST v2 (copied as the base)
  jira-cloud-platform-v3-full.json  full Jira Cloud v3 (source of the added
                                    operations and their schemas)

What it changes against the stub (also recorded in info.x-herald):
  added   GET  /rest/api/2/search                          (v3 searchForIssuesUsingJql)
          GET  /rest/api/2/issue/{issueIdOrKey}/transitions (v3 getTransitions)
          POST /rest/api/2/issue/{issueIdOrKey}/transitions (v3 doTransition)
          GET  /rest/api/3/search/jql                      (v3 searchAndReconsileIssuesUsingJql)
          schemas SearchResults, SearchAndReconcileResults, Transitions (from v3,
          unchanged) and CommentCreateV2, IssueCreateDetailsV2,
          IssueTransitionRequestV2 (herald's own)
  changed POST /rest/api/2/issue: request schema IssueCreateDetailsV2 (requires
          fields.project, fields.issuetype, fields.summary, as a real Jira does;
          the stub's IssueUpdateDetails requires nothing) and a v2 example
          (plain-string description instead of ADF)
          POST /rest/api/2/issue/{issueIdOrKey}/comment: request schema
          CommentCreateV2 (body: required non-empty string, v2 wiki markup; the
          stub's Comment accepts any body, or none) and v2 examples
          POST .../transitions (added): request schema IssueTransitionRequestV2
          (transition.id required; v3's IssueUpdateDetails requires nothing)
          GET /rest/api/2/issue/{issueIdOrKey}: a 200 example (the stub has none;
          Prism's generated one breaks the schema)
Every added operation gets static response examples as JSON objects: the v3
spec stores its examples as JSON-encoded strings, which Prism would send back
as one JSON string. The `{}` (anonymous) alternative of the v3 transitions
operations' security is dropped, so, like the stub's operations, they need
basic auth (or a bearer token).

Usage: python3 tests/contracts/build_jira_v2.py [--specs DIR] [--out FILE]
"""
import argparse
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ISSUE_KEY = "OPS-1"
ISSUE_ID = "10000"
BASE = "http://127.0.0.1:14010"  # scripts/prism.sh's default Jira mock port

# v3 operation -> path in our document.
ADDED = [
    ("/rest/api/3/search", "get", "/rest/api/2/search"),
    ("/rest/api/3/issue/{issueIdOrKey}/transitions", "get",
     "/rest/api/2/issue/{issueIdOrKey}/transitions"),
    ("/rest/api/3/issue/{issueIdOrKey}/transitions", "post",
     "/rest/api/2/issue/{issueIdOrKey}/transitions"),
    ("/rest/api/3/search/jql", "get", "/rest/api/3/search/jql"),
]

STATUS_CATEGORIES = {
    "new": {"colorName": "blue-gray", "id": 2, "key": "new", "name": "To Do",
            "self": BASE + "/rest/api/2/statuscategory/2"},
    "indeterminate": {"colorName": "yellow", "id": 4, "key": "indeterminate", "name": "In Progress",
                      "self": BASE + "/rest/api/2/statuscategory/4"},
    "done": {"colorName": "green", "id": 3, "key": "done", "name": "Done",
             "self": BASE + "/rest/api/2/statuscategory/3"},
}


def status(sid, name, cat):
    return {"description": "", "iconUrl": BASE + "/images/icons/statuses/generic.png", "id": sid,
            "name": name, "self": BASE + "/rest/api/2/status/" + sid,
            "statusCategory": STATUS_CATEGORIES[cat]}


def transition(tid, name, to):
    return {"hasScreen": False, "id": tid, "isAvailable": True, "isConditional": False,
            "isGlobal": True, "isInitial": False, "name": name, "to": to}


TRANSITIONS = [
    transition("11", "To Do", status("10000", "To Do", "new")),
    transition("21", "In Progress", status("3", "In Progress", "indeterminate")),
    transition("31", "Done", status("10001", "Done", "done")),
]

ISSUE = {
    "expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
    "id": ISSUE_ID,
    "key": ISSUE_KEY,
    "self": BASE + "/rest/api/2/issue/" + ISSUE_ID,
    "fields": {
        "summary": "[herald] disk almost full on db-1",
        "labels": ["herald", "herald-x"],
        "status": status("10000", "To Do", "new"),
        "issuetype": {"id": "10001", "name": "Task"},
        "project": {"id": "10000", "key": "OPS", "name": "Operations"},
        "created": "2024-05-01T12:00:00.000+0000",
        "updated": "2024-05-01T12:00:00.000+0000",
    },
}

SEARCH_V2_EMPTY = {"expand": "schema,names", "startAt": 0, "maxResults": 50, "total": 0, "issues": []}
SEARCH_V2_ONE = {"expand": "schema,names", "startAt": 0, "maxResults": 50, "total": 1, "issues": [ISSUE]}
SEARCH_JQL_EMPTY = {"isLast": True, "issues": []}
SEARCH_JQL_ONE = {"isLast": True, "issues": [{k: v for k, v in ISSUE.items() if k != "expand"}]}

COMMENT_BODY = "Alert *db-1 disk* fired again at 2024-05-01T12:05:00Z (herald)."
COMMENT = {
    "author": {"accountId": "5b10a2844c20165700ede21g", "active": True, "displayName": "herald bot",
               "self": BASE + "/rest/api/2/user?accountId=5b10a2844c20165700ede21g"},
    "body": COMMENT_BODY,
    "created": "2024-05-01T12:05:00.000+0000",
    "id": "10100",
    "self": BASE + "/rest/api/2/issue/" + ISSUE_ID + "/comment/10100",
    "updateAuthor": {"accountId": "5b10a2844c20165700ede21g", "active": True, "displayName": "herald bot",
                     "self": BASE + "/rest/api/2/user?accountId=5b10a2844c20165700ede21g"},
    "updated": "2024-05-01T12:05:00.000+0000",
    "jsdPublic": True,
}

CREATE_ISSUE_EXAMPLE = {
    "fields": {
        "project": {"key": "OPS"},
        "issuetype": {"name": "Task"},
        "summary": "[herald] disk almost full on db-1",
        "description": "h3. Alert\n*db-1*: disk 97% full\n\n{noformat}\nsource: prometheus\n{noformat}",
        "labels": ["herald", "herald-x"],
        "priority": {"name": "High"},
    }
}

COMMENT_CREATE_V2 = {
    "additionalProperties": True,
    "description": "herald: the request body of Jira REST v2 `Add comment`. In v2 `body` is a string "
                   "in wiki markup (v3 takes an Atlassian Document Format object instead).",
    "properties": {
        "body": {"description": "The comment text, Jira wiki markup.", "minLength": 1, "type": "string"},
        "properties": {"items": {"$ref": "#/components/schemas/EntityProperty"}, "type": "array"},
        "visibility": {"$ref": "#/components/schemas/Visibility"},
    },
    "required": ["body"],
    "type": "object",
}

IDENT = {"type": "object", "description": "Referenced by `id`, `key` or `name`.",
         "minProperties": 1, "additionalProperties": True}
TRANSITION_V2 = {
    "allOf": [
        {"$ref": "#/components/schemas/IssueUpdateDetails"},
        {
            "properties": {
                "transition": {
                    "properties": {"id": {"minLength": 1, "type": "string"}},
                    "required": ["id"],
                    "type": "object",
                }
            },
            "required": ["transition"],
            "type": "object",
        },
    ],
    "description": "herald: the request body of `Transition issue`: IssueUpdateDetails with the "
                   "`transition.id` Jira requires (400 \"no transition is specified\" otherwise).",
}

ISSUE_CREATE_V2 = {
    "allOf": [
        {"$ref": "#/components/schemas/IssueUpdateDetails"},
        {
            "properties": {
                "fields": {
                    "properties": {
                        "project": IDENT,
                        "issuetype": IDENT,
                        "summary": {"minLength": 1, "type": "string"},
                    },
                    "required": ["project", "issuetype", "summary"],
                    "type": "object",
                }
            },
            "required": ["fields"],
            "type": "object",
        },
    ],
    "description": "herald: the request body of `Create issue`: IssueUpdateDetails plus the fields every "
                   "Jira requires on create (project, issuetype, summary).",
}

X_HERALD = {
    "source": "jira-v2-stub.json extended with operations derived from jira-cloud-platform-v3-full.json "
              "(both Apache-2.0) by tests/contracts/build_jira_v2.py",
    "added": [f"{m.upper()} {p}" for _, m, p in ADDED],
    "changed": [
        "POST /rest/api/2/issue: request schema IssueCreateDetailsV2 (fields.project, fields.issuetype, "
        "fields.summary required), v2 request example",
        "POST /rest/api/2/issue/{issueIdOrKey}/comment: request schema CommentCreateV2 (body: required "
        "string), v2 examples",
        "POST /rest/api/2/issue/{issueIdOrKey}/transitions (added): request schema IssueTransitionRequestV2 "
        "(transition.id required)",
        "GET /rest/api/2/issue/{issueIdOrKey}: a 200 example (the stub has none)",
    ],
    "examples": "static; GET searches answer the empty example first, `Prefer: example=one` gives one issue",
}


def json_example(name_value_pairs):
    return {name: {"summary": name, "value": value} for name, value in name_value_pairs}


def build(stub, v3):
    doc = copy.deepcopy(stub)
    s3 = v3["components"]["schemas"]
    schemas = doc["components"]["schemas"]

    for src, method, dst in ADDED:
        op = copy.deepcopy(v3["paths"][src][method])
        op["security"] = [s for s in op.get("security", []) if s]  # drop {} = anonymous
        doc["paths"].setdefault(dst, {})[method] = op

    paths = doc["paths"]
    # GET /rest/api/2/search
    ok = paths["/rest/api/2/search"]["get"]["responses"]["200"]["content"]["application/json"]
    ok.pop("example", None)
    ok["examples"] = json_example([("empty", SEARCH_V2_EMPTY), ("one", SEARCH_V2_ONE)])
    # GET /rest/api/3/search/jql
    ok = paths["/rest/api/3/search/jql"]["get"]["responses"]["200"]["content"]["application/json"]
    ok.pop("example", None)
    ok["examples"] = json_example([("empty", SEARCH_JQL_EMPTY), ("one", SEARCH_JQL_ONE)])
    # GET transitions
    tr = paths["/rest/api/2/issue/{issueIdOrKey}/transitions"]
    ok = tr["get"]["responses"]["200"]["content"]["application/json"]
    ok["example"] = {"expand": "transitions", "transitions": TRANSITIONS}
    # POST transitions: 204 has no body.
    tr["post"]["responses"]["204"].pop("content", None)
    tr["post"]["requestBody"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/IssueTransitionRequestV2"}
    tr["post"]["requestBody"]["content"]["application/json"]["example"] = {
        "transition": {"id": "31"},
        "update": {"comment": [{"add": {"body": "Resolved by herald: alert cleared."}}]},
    }

    # Schemas the added operations reference (the rest of their closure is in the stub).
    for name in ("SearchResults", "SearchAndReconcileResults", "Transitions"):
        if name in schemas and schemas[name] != s3[name]:
            sys.exit(f"schema {name} differs between stub and v3")
        schemas[name] = copy.deepcopy(s3[name])
    schemas["CommentCreateV2"] = COMMENT_CREATE_V2
    schemas["IssueCreateDetailsV2"] = ISSUE_CREATE_V2
    schemas["IssueTransitionRequestV2"] = TRANSITION_V2

    # POST /rest/api/2/issue
    create = paths["/rest/api/2/issue"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": "#/components/schemas/IssueCreateDetailsV2"}
    body["example"] = CREATE_ISSUE_EXAMPLE
    created = create["responses"]["201"]["content"]["application/json"]
    created["example"] = {"id": ISSUE_ID, "key": ISSUE_KEY, "self": BASE + "/rest/api/2/issue/" + ISSUE_ID}

    # GET /rest/api/2/issue/{issueIdOrKey}: the stub has no example, and the one
    # Prism would make up from the schema breaks the schema (response-side
    # sl-violations on every call).
    got = paths["/rest/api/2/issue/{issueIdOrKey}"]["get"]["responses"]["200"]["content"]["application/json"]
    got["example"] = ISSUE

    # POST /rest/api/2/issue/{issueIdOrKey}/comment
    add = paths["/rest/api/2/issue/{issueIdOrKey}/comment"]["post"]
    body = add["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": "#/components/schemas/CommentCreateV2"}
    body["example"] = {"body": COMMENT_BODY}
    add["responses"]["201"]["content"]["application/json"]["example"] = COMMENT

    doc["info"]["x-herald"] = X_HERALD
    return doc


def check_refs(doc):
    names = set(doc["components"]["schemas"])
    missing = set()

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "$ref" and isinstance(v, str):
                    if v.startswith("#/components/schemas/") and v.split("/")[-1] not in names:
                        missing.add(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for x in o:
                walk(x)

    walk(doc)
    if missing:
        sys.exit(f"unresolved $refs: {sorted(missing)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", default=os.path.join(REPO, "..", "shared", "specs"))
    ap.add_argument("--out", default=os.path.join(HERE, "jira-v2.json"))
    a = ap.parse_args()
    with open(os.path.join(a.specs, "jira-v2-stub.json")) as f:
        stub = json.load(f)
    with open(os.path.join(a.specs, "jira-cloud-platform-v3-full.json")) as f:
        v3 = json.load(f)
    doc = build(stub, v3)
    check_refs(doc)
    with open(a.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}: {len(doc['paths'])} paths, {len(doc['components']['schemas'])} schemas")


if __name__ == "__main__":
    main()
