# The Machine ID guide's step 2 as HCL: a role, a bot that carries it, and everything the machine needs.
# `machineid terraform install` once, then `tofu init && tofu apply` (or terraform). The provider reads the cluster
# address and identity from MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY (or a provider "machineid" block).

terraform {
  required_providers {
    machineid = { source = "machineid/machineid" }
  }
}

variable "login" {
  description = "The login the bot may use on the nodes."
  type        = string
  default     = "root"
}

variable "destination_dir" {
  description = "Where the agent writes the certificates."
  type        = string
  default     = "/opt/machine-id"
}

variable "data_dir" {
  description = "Where the agent keeps its renewable identity."
  type        = string
  default     = "/var/lib/machineid/bot-robot"
}

variable "token_rotation" {
  description = "Change it to issue the bot a new join token."
  type        = number
  default     = 0
}

resource "machineid_role" "ci_deploy" {
  name        = "ci-deploy"
  description = "What the CI bot may do on the nodes."
  allow {
    logins      = ["{{internal.logins}}"]
    node_labels = { "*" = ["*"] }
    rules {
      resources = ["node"]
      verbs     = ["list", "read"]
    }
  }
  options {
    max_session_ttl = "8h"
  }
}

resource "machineid_bot" "robot" {
  name            = "robot"
  roles           = [machineid_role.ci_deploy.name]
  traits          = { logins = [var.login] }
  destination_dir = var.destination_dir
  data_dir        = var.data_dir
  token_rotation  = var.token_rotation
}

data "machineid_cluster" "this" {}

output "cluster_name" { value = data.machineid_cluster.this.cluster_name }
output "bot_user" { value = machineid_bot.robot.user_name }
output "ca_pin" { value = machineid_bot.robot.ca_pins[0] }
output "start_command" { value = machineid_bot.robot.start_command }
output "systemd_unit" { value = machineid_bot.robot.systemd_unit }
output "agent_config" {
  value     = machineid_bot.robot.agent_config
  sensitive = true # it holds the join token
}
