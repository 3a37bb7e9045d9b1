"""Validates BatchImportFindings request bodies (JSON files) against the
`securityhub` service model that botocore ships, as the AWS SDKs validate
their input: unknown members, wrong types, missing required members, list
and string lengths. Prints one line per problem; exits 1 if there is any."""
import json
import sys

import botocore.session
from botocore.validate import ParamValidator

model = botocore.session.get_session().get_service_model("securityhub")
shape = model.operation_model("BatchImportFindings").input_shape
problems = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        params = json.load(f)
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        problems += 1
        print(f"{path}: {report.generate_report()}")
    else:
        print(f"{path}: valid")
sys.exit(1 if problems else 0)
