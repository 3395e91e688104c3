# The infrastructure the CI recipe checks in the tests (in a real repository: your infra/ directory).
terraform {
  required_providers {
    machineid = { source = "machineid/machineid" }
  }
}

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

resource "machineid_bot" "deploy" {
  name   = "ci-deploy"
  roles  = [machineid_role.deployer.name]
  traits = { logins = ["deploy"] }
}

resource "machineid_bot" "release" {
  name   = "ci-release"
  roles  = [machineid_role.deployer.name]
  traits = { logins = ["release"] }
}
