"""Starting the plugins fast: the CLIs (tofu, terraform) and the Pulumi engine exec a plugin several times per
command, and a Python plugin that imports grpc, cryptography and its own modules on each start pays ~0.3 s. A
stdlib-only launcher (launcher.py) asks a per-user fork server (forkserver.py) with everything imported to fork a
child that serves the CLI or engine exactly as the plugin would in its own process."""
