"""The guide's IAM join as code: an iam token restricted to an AWS account (and ARN), and a bot that uses it.

The rendered agent config holds no secret: the token's name is not one, since a machine must prove with a signed
sts:GetCallerIdentity request that it runs as an allowed AWS identity.
"""

import pulumi
import pulumi_machineid as machineid

config = pulumi.Config()

role = machineid.Role(
    "aws-deploy",
    allow=machineid.RoleConditionsArgs(logins=["{{internal.logins}}"], node_labels={"*": ["*"]},
                                       rules=[machineid.RuleArgs(resources=["node"], verbs=["list", "read"])]),
)

token = machineid.ProvisionToken(
    "iam-token",
    name="iam-token",
    join_method="iam",
    bot_name="aws-robot",
    expires="3000-01-01T00:00:00Z",  # safe to keep long: joining needs the AWS identity, not the name
    allow=[machineid.TokenRuleArgs(aws_account=config.require("awsAccount"), aws_arn=config.get("awsArn") or "")],
)

bot = machineid.Bot(
    "aws-robot",
    name="aws-robot",
    roles=[role.name],
    traits={"logins": [config.get("login") or "ec2-user"]},
    token_name=token.name,
    destination_dir=config.get("destinationDir") or "/opt/machine-id",
    data_dir=config.get("dataDir") or "/var/lib/machineid/bot-aws-robot",
)

pulumi.export("joinMethod", bot.join_method)
pulumi.export("agentConfig", bot.agent_config)
pulumi.export("startCommand", bot.start_command)
