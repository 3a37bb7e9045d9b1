"""Makes moto's server ready for herald's AWS tests, then prints key=value
lines: the four calls moto lets through unauthenticated
(INITIAL_NO_AUTH_ACTION_COUNT=4) create a user with an access key and an
allow-all policy; later calls are signed with that key (moto checks SigV4
from then on). A role for AssumeRole tests is created the same way."""
import json
import sys

import boto3

endpoint, region = sys.argv[1], sys.argv[2]
anon = dict(endpoint_url=endpoint, region_name=region,
            aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="herald")
key = iam.create_access_key(UserName="herald")["AccessKey"]
allow_all = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
policy = iam.create_policy(PolicyName="herald-all", PolicyDocument=allow_all)["Policy"]
iam.attach_user_policy(UserName="herald", PolicyArn=policy["Arn"])

signed = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id=key["AccessKeyId"],
              aws_secret_access_key=key["SecretAccessKey"])
iam = boto3.client("iam", **signed)
trust = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
role = iam.create_role(RoleName="herald-role", AssumeRolePolicyDocument=trust)["Role"]
iam.attach_role_policy(RoleName="herald-role", PolicyArn=policy["Arn"])
account = boto3.client("sts", **signed).get_caller_identity()["Account"]
print(f"access_key_id={key['AccessKeyId']}")
print(f"secret_access_key={key['SecretAccessKey']}")
print(f"role_arn={role['Arn']}")
print(f"account_id={account}")
