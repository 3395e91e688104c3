terraform {
  required_providers {
    machineid = { source = "machineid/machineid" }
  }
}

# Or leave both out and set MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY.
provider "machineid" {
  address       = "127.0.0.1:3025"
  identity_file = "./cluster/admin.identity"
}
