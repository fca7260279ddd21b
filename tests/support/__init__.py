"""Helpers the tests share that are not fixtures (those live in the conftest.py files).

    paths     ROOT, the repository the tests run from
    db        ExternalServer (TEST_DATABASE_URL's server), old_sync_copy, snapshot of a database
    env       the sync's environment variables, for fixtures that clear them
    api       API Gateway HTTP API v2 events, LambdaClient (the Mangum handler as Lambda calls it)
    http      free_port, uvicorn in a thread or a subprocess
    template  template.yaml as the SAM translator reads it, and the parameters it requires

Test modules import from here, never from each other.
"""
