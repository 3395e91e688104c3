resource "machineid_node" "web" {
  name   = "web-1"
  addr   = "10.0.0.5:22"
  labels = { env = "prod", app = "web" }

  # Where the node's setup installs machineid from (your organisation's index).
  package_index = "https://pypi.example.com/simple"
}

# A VM created with this user data joins as node web-1 and enforces its labels, for example:
#   resource "aws_instance" "web" { ... user_data = machineid_node.web.user_data }
output "web_setup_script" {
  value     = machineid_node.web.setup_script
  sensitive = true
}
