data "machineid_bot" "ci" {
  name = "ci"
}

output "ci_roles" { value = data.machineid_bot.ci.roles }
