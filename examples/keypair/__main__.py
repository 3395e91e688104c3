"""A bot that joins with a bound key pair (Teleport's bound_keypair): the machine made its key with `machineid bot
keypair create`, and only the public half is in this program.

Nothing here is a secret: the token's name is not one (joining needs the private key, which never leaves the
machine), and neither is the rendered agent config, so `pulumi stack export` shows everything in clear. Changing
rotateAfter or recoveryLimit updates the token in place; a new publicKey replaces it (a new onboarding).
"""

import pulumi
import pulumi_machineid as machineid

config = pulumi.Config()

role = machineid.Role(
    "keypair-deploy",
    allow=machineid.RoleConditionsArgs(logins=["{{internal.logins}}"], node_labels={"*": ["*"]},
                                       rules=[machineid.RuleArgs(resources=["node"], verbs=["list", "read"])]),
)

token = machineid.ProvisionToken(
    "keypair-token",
    name="keypair-robot-key",
    join_method="bound_keypair",
    bot_name="keypair-robot",
    bound_keypair=machineid.BoundKeypairArgs(
        onboarding=machineid.BoundKeypairOnboardingArgs(initial_public_key=config.require("publicKey")),
        recovery=machineid.BoundKeypairRecoveryArgs(mode="standard", limit=config.get_int("recoveryLimit") or 1),
        rotate_after=config.get("rotateAfter") or None,
    ),
)

bot = machineid.Bot(
    "keypair-robot",
    name="keypair-robot",
    roles=[role.name],
    traits={"logins": [config.get("login") or "ubuntu"]},
    token_name=token.name,
    destination_dir=config.get("destinationDir") or "/opt/machine-id",
    data_dir=config.get("dataDir") or "/var/lib/machineid/bot-keypair-robot",
)

pulumi.export("joinMethod", bot.join_method)
pulumi.export("boundPublicKey", token.bound_public_key)
pulumi.export("agentConfig", bot.agent_config)
pulumi.export("startCommand", bot.start_command)
