data "machineid_role" "access" {
  name = "access"
}

output "access_logins" { value = data.machineid_role.access.allow.logins }
