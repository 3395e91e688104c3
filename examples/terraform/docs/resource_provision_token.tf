# A single-use join token; its name is the secret and is generated when left out. Terraform marks sensitivity per
# attribute, so that name is `secret_name` (sensitive): machineid_provision_token.ci.secret_name.
resource "machineid_provision_token" "ci" {
  bot_name = machineid_bot.ci.name
  ttl      = "30m"
}

# An IAM token: any AWS identity its rules match joins until it expires.
resource "machineid_provision_token" "aws" {
  name        = "ci-on-aws"
  join_method = "iam"
  bot_name    = machineid_bot.ci.name
  expires     = "2027-06-30T00:00:00Z"
  allow {
    aws_account = "111111111111"
    aws_arn     = "arn:aws:sts::111111111111:assumed-role/ci-runner/*"
  }
}

# A bound keypair token: the bot joins by signing with the key `machineid bot keypair create` made on the machine
# (reusable, not secret). rotate_after and recovery change in place; a new initial_public_key replaces the token.
resource "machineid_provision_token" "keypair" {
  name        = "ci-keypair"
  join_method = "bound_keypair"
  bot_name    = machineid_bot.ci.name
  bound_keypair {
    onboarding {
      initial_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt3yY5rT2nn5bKJ0k2h8kQq9hTn8nUo9qGkS3v0wN1a ci@host"
    }
    recovery {
      mode  = "standard"
      limit = 1
    }
    rotate_after = "2027-01-01T00:00:00Z"
  }
}
