"""The Machine ID guide's step 2 as code: a role, a bot that carries it, and everything the machine needs.

The provider is configured from the environment (MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY), or with
`pulumi config set machineid:address ...` and `machineid:identityFile`.
"""

import pulumi
import pulumi_machineid as machineid

config = pulumi.Config()
login = config.get("login") or "root"

deploy = machineid.Role(
    "ci-deploy",
    description="What the CI bot may do on the nodes.",
    allow=machineid.RoleConditionsArgs(
        logins=["{{internal.logins}}"],
        node_labels={"*": ["*"]},
        rules=[machineid.RuleArgs(resources=["node"], verbs=["list", "read"])],
    ),
    options=machineid.RoleOptionsArgs(max_session_ttl="8h"),
)

robot = machineid.Bot(
    "robot",
    roles=[deploy.name],
    traits={"logins": [login]},
    destination_dir=config.get("destinationDir") or "/opt/machine-id",
    data_dir=config.get("dataDir") or "/var/lib/machineid/bot-robot",
    token_rotation=config.get_int("tokenRotation") or 0,  # bump to re-onboard the bot with a new token
)

cluster = machineid.get_cluster_info()

pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("botName", robot.name)
pulumi.export("botUser", robot.user_name)
pulumi.export("joinMethod", robot.join_method)
pulumi.export("caPin", robot.ca_pins[0])
pulumi.export("token", robot.token)
pulumi.export("agentConfig", robot.agent_config)
pulumi.export("startCommand", robot.start_command)
pulumi.export("systemdUnit", robot.systemd_unit)
