# The identities a repository manages as code (in your repository: infra/): a role for deployments, and two bots
# that join from GitHub Actions of acme/app. The CI jobs review every pull request that changes it, apply it from
# the main branch, and check every night that the cluster still matches it (see ../README.md).
#
# Nothing here, and nothing in the state, is a secret: the bots join with their CI's ID token, so their join
# tokens' names prove nothing.
terraform {
  required_providers {
    machineid = { source = "machineid/machineid" }
  }
  # The state in PostgreSQL (the connection string in PG_CONN_STR); ../README.md says how to use S3 instead.
  backend "pg" {}
}

# Configured by the job's environment: where the cluster is and how to join (MACHINEID_AUTH_SERVER,
# MACHINEID_CA_PIN, MACHINEID_JOIN_METHOD, MACHINEID_JOIN_TOKEN); the identity stays in the provider's memory.
provider "machineid" {}

variable "logins" {
  type    = list(string)
  default = ["{{internal.logins}}"]
}

resource "machineid_role" "deployer" {
  name = "ci-deployer"
  allow {
    logins      = var.logins
    node_labels = { env = ["prod"] }
  }
}

# acme/app's deploy workflow on main joins as ci-deploy ...
resource "machineid_provision_token" "deploy" {
  name        = "ci-deploy-github"
  join_method = "github"
  bot_name    = "ci-deploy"
  github {
    allow {
      repository = "acme/app"
      workflow   = "deploy"
      ref        = "refs/heads/main"
    }
  }
}

resource "machineid_bot" "deploy" {
  name       = "ci-deploy"
  roles      = [machineid_role.deployer.name]
  traits     = { logins = ["deploy"] }
  token_name = machineid_provision_token.deploy.name
}

# ... and its release workflow, on a version tag, as ci-release.
resource "machineid_provision_token" "release" {
  name        = "ci-release-github"
  join_method = "github"
  bot_name    = "ci-release"
  github {
    allow {
      repository = "acme/app"
      workflow   = "release"
      ref        = "refs/tags/v*"
      ref_type   = "tag"
    }
  }
}

resource "machineid_bot" "release" {
  name       = "ci-release"
  roles      = [machineid_role.deployer.name]
  traits     = { logins = ["release"] }
  token_name = machineid_provision_token.release.name
}
