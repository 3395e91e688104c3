resource "machineid_role" "deploy" {
  name        = "deploy"
  description = "CI deploys to the web servers"
  allow {
    logins      = ["deploy"]
    node_labels = { env = ["staging", "prod"] }
  }
  deny {
    node_labels = { tier = ["db"] }
  }
  options {
    max_session_ttl = "8h"
  }
}
