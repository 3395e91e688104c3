"""`machineid review`: what a plan changes about who can do what, for the pull request that carries it."""
