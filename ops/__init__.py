"""Operations kept as code: the work pools, alerts and automations a tuneflow Prefect server runs with.

The YAML and JSON files beside this module are the definitions; `apply.py` puts them on a server
(`tuneflow ops apply`, `make stack`). Installed as tuneflow.ops, between the CLI and the library: it talks to
Prefect and never imports the flows, the tasks or the library.
"""
