"""The joiner's half of an IAM join (the agent's, or a tool's joining in memory): sign sts:GetCallerIdentity with
the machine's AWS credentials.

botocore's normal credential chain (environment, shared config and credentials files, instance metadata) gives
the credentials; region and endpoint come from the usual AWS settings, AWS_ENDPOINT_URL_STS included. The
cluster's challenge travels in a header that SigV4 signs, so the request cannot be replayed for another join.
"""

from __future__ import annotations

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from machineid.api.iam import CHALLENGE_HEADER, STS_BODY, SignedRequest
from machineid.model.errors import MachineIDError

DEFAULT_REGION = "us-east-1"


def sign_get_caller_identity(challenge: str) -> SignedRequest:
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise MachineIDError("no AWS credentials found (environment, ~/.aws, or instance metadata); the iam join "
                             "method proves the machine's AWS identity with them")
    region = session.get_config_variable("region") or DEFAULT_REGION
    # The client resolves the endpoint exactly as any AWS SDK would (AWS_ENDPOINT_URL_STS, FIPS, regional...).
    endpoint = session.create_client("sts", region_name=region).meta.endpoint_url.rstrip("/") + "/"
    request = AWSRequest(method="POST", url=endpoint, data=STS_BODY, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Accept": "application/json",
        CHALLENGE_HEADER: challenge,
    })
    SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    prepared = request.prepare()
    return SignedRequest(method="POST", url=prepared.url, headers=dict(prepared.headers.items()), body=STS_BODY)
