"""Prints, as one JSON array, the Security Hub findings moto holds with the
given ids (every page of GetFindings, signed with the setup key), in the
order asked: a list per id, so a duplicate shows."""
import json
import sys

import boto3

endpoint, region, key_id, secret = sys.argv[1:5]
ids = sys.argv[5:]
sh = boto3.client("securityhub", endpoint_url=endpoint, region_name=region,
                  aws_access_key_id=key_id, aws_secret_access_key=secret)
found = {}
token = None
while True:
    kw = {"MaxResults": 100}
    if token:
        kw["NextToken"] = token
    page = sh.get_findings(**kw)
    for f in page["Findings"]:
        found.setdefault(f["Id"], []).append(f)
    token = page.get("NextToken")
    if not token:
        break
print(json.dumps([found.get(i, []) for i in ids], sort_keys=True))
